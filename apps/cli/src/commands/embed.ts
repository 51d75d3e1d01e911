import { basename } from 'node:path';
import { MicroBatcher } from '@embedpool/core/batching';
import { loadConfig } from '@embedpool/core/config';
import { Engine } from '@embedpool/core/engine';
import type { PreprocessorConfig } from '@embedpool/core/preprocess';
import type { Command } from 'commander';
import {
  cliLogger,
  disableOrtTelemetry,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_PARTIAL,
  nonNegativeInt,
  positiveInt,
  requireModelFile,
  runAction,
} from './cli-support';
import { checkModelInputSize, loadInputShape, progressBar } from './embed-setup';
import { runLocalEmbed } from './local-embed';
import { type LineSink, openLineSink } from './output';

interface EmbedFlags {
  model?: string;
  out?: string;
  preprocessorConfig?: string;
  batchSize: number;
  threads: number;
  decodeConcurrency: number;
  maxBytes?: number;
  maxPixels?: number;
  progress: boolean;
}

/** The flags with the model resolved and the limits filled in, as the service would have them. */
interface EmbedOptions extends EmbedFlags {
  model: string;
  preprocessor: PreprocessorConfig;
  maxBytes: number;
  maxPixels: number;
}

/**
 * The model and limits exactly as `embedpool serve` would pick them: --model / MODEL_PATH, else the model
 * in the cache (EMBEDPOOL_CACHE_DIR, fetched when MODEL_FETCH allows); MAX_IMAGE_BYTES / MAX_IMAGE_PIXELS
 * unless the flags say otherwise. Unlike a development server, never random weights: a file of vectors
 * that mean nothing is worse than an error.
 */
async function resolveEmbedOptions(flags: EmbedFlags): Promise<EmbedOptions> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (flags.model !== undefined) env.MODEL_PATH = flags.model;
  if (flags.preprocessorConfig !== undefined) env.PREPROCESSOR_CONFIG = flags.preprocessorConfig;
  // Its output names no model, so a file with no recorded id is fine here: production's rule that a model
  // must carry its id is for fleets writing vectors under a model name.
  if (env.MODEL_PATH && !env.MODEL_ID) env.MODEL_ID = `file:${basename(env.MODEL_PATH)}`;
  const config = loadConfig(env, { NODE_ENV: 'production' });
  if (flags.model !== undefined) await requireModelFile(flags.model);
  const { resolveModel } = await import('@embedpool/worker');
  const source = await resolveModel(config, cliLogger('embed', 'warn'));
  return {
    ...flags,
    model: source.path,
    preprocessor: source.preprocessor,
    maxBytes: flags.maxBytes ?? config.MAX_IMAGE_BYTES,
    maxPixels: flags.maxPixels ?? config.MAX_IMAGE_PIXELS,
  };
}

// Long enough for the decoders to deliver a few more images to an idle model, short next to a run.
const BATCH_WAIT_MS = 20;
// 128 + SIGINT, what shells report for a job stopped by Ctrl-C.
const EXIT_INTERRUPTED = 130;

const EXIT_HELP = `
Output: one JSON line per input file, in input order:
  {"file": "<path as given>", "image_features": [...]}
  {"file": "<path as given>", "error": {"code": "IMAGE_DECODE_FAILED", "message": "..."}}

Exit status:
  ${EXIT_OK}  every file was embedded
  ${EXIT_PARTIAL}  some files failed (their lines carry "error"); the others were embedded
  ${EXIT_FAILURE}  usage error, or the model / preprocessor config / output could not be used
`;

interface Interrupt {
  signal: AbortSignal;
  dispose(): void;
}

/**
 * Ctrl-C drops the partial output file at once, then lets the model threads finish their current run
 * (terminating onnxruntime mid-run aborts the process). A second Ctrl-C exits regardless.
 */
function onInterrupt(sink: LineSink): Interrupt {
  const controller = new AbortController();
  const handler = () => {
    if (controller.signal.aborted) process.exit(EXIT_INTERRUPTED);
    sink.abortSync();
    controller.abort();
  };
  process.on('SIGINT', handler);
  return { signal: controller.signal, dispose: () => process.off('SIGINT', handler) };
}

async function embedWithModel(
  files: string[],
  opts: EmbedOptions,
  sink: LineSink,
  signal: AbortSignal,
): Promise<{ failed: number; interrupted: boolean }> {
  const { config, height, width } = await loadInputShape(opts.preprocessor);
  disableOrtTelemetry();
  const engine = await Engine.load({ modelPath: opts.model, runtime: { intraOpThreads: opts.threads } });
  const bar = progressBar(files.length, opts.progress, opts.out === undefined || opts.out === '-');
  try {
    checkModelInputSize(engine, height, width);
    const batcher = new MicroBatcher(engine, {
      maxBatchSize: opts.batchSize,
      batchWaitMs: BATCH_WAIT_MS,
      height,
      width,
    });
    let shownFailed = 0;
    try {
      return await runLocalEmbed({
        files,
        batcher,
        preprocess: { config, maxBytes: opts.maxBytes, maxInputPixels: opts.maxPixels },
        floats: 3 * height * width,
        decodeConcurrency: opts.decodeConcurrency,
        // Two batches' worth keeps the model fed while the next batch decodes.
        window: Math.max(2 * opts.batchSize, opts.decodeConcurrency),
        emit: (line) => sink.write(line),
        onLine: (line, done) => {
          if ('error' in line) shownFailed++;
          bar?.update(done, { failed: shownFailed });
        },
        signal,
      });
    } finally {
      await batcher.close();
    }
  } finally {
    bar?.stop();
    await engine.close();
  }
}

async function embedFiles(files: string[], flags: EmbedFlags): Promise<number> {
  // Resolved before the output is opened, so a typo leaves no empty output file behind.
  const opts = await resolveEmbedOptions(flags);
  const sink = await openLineSink(opts.out);
  const interrupt = onInterrupt(sink);
  try {
    const result = await embedWithModel(files, opts, sink, interrupt.signal);
    if (result.interrupted || interrupt.signal.aborted) {
      await sink.abort();
      process.stderr.write('\nembedpool: interrupted\n');
      return EXIT_INTERRUPTED;
    }
    await sink.commit();
    return result.failed > 0 ? EXIT_PARTIAL : EXIT_OK;
  } catch (err) {
    await sink.abort();
    throw err;
  } finally {
    interrupt.dispose();
  }
}

export function registerEmbedCommand(program: Command): void {
  program
    .command('embed')
    .description('embed local image files with an ONNX model (no Redis or server needed)')
    .argument('<files...>', 'image files (jpeg, png, webp, gif, tiff, ...)')
    .option(
      '--model <model.onnx>',
      'ONNX model (default: as the service finds it: MODEL_PATH, else the model `embedpool model fetch` cached)',
    )
    .option(
      '--out <file.jsonl>',
      'write the lines to this file (atomically: temp file, then rename); default stdout',
    )
    .option(
      '--preprocessor-config <json>',
      'Hugging Face preprocessor_config.json (default: PREPROCESSOR_CONFIG, the one beside the model, else DINOv2)',
    )
    .option('--batch-size <n>', 'images per model run', positiveInt, 16)
    .option(
      '--threads <n>',
      'onnxruntime intra-op threads; 0 lets onnxruntime choose (one per core)',
      nonNegativeInt,
      0,
    )
    .option('--decode-concurrency <n>', 'files read and decoded at once', positiveInt, 4)
    .option(
      '--max-bytes <n>',
      'largest file accepted, in bytes (default: MAX_IMAGE_BYTES, 20 MiB)',
      positiveInt,
    )
    .option(
      '--max-pixels <n>',
      'largest image accepted, width x height (default: MAX_IMAGE_PIXELS, 100000000)',
      positiveInt,
    )
    .option('--no-progress', 'no progress bar on a terminal')
    .addHelpText('after', EXIT_HELP)
    .action(runAction((files: string[], flags: EmbedFlags) => embedFiles(files, flags)));
}
