import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { EmbedpoolError } from '@embedpool/core/errors';
import { loadDinov2Config } from '@embedpool/core/model';
import {
  DEFAULT_MODEL_SOURCE,
  DEFAULT_MODEL_VARIANT,
  defaultCacheDir,
  type FetchedModel,
  fetchModel,
  type ModelSource,
  type ModelVariant,
  modelCacheDir,
} from '@embedpool/core/model-fetch';
import { fetchedModelId, writeModelIdentity } from '@embedpool/core/model-identity';
import { fixedOutputSize, loadPreprocessorConfig } from '@embedpool/core/preprocess';
import { type Command, Option } from 'commander';
import { cliLogger, runAction } from './cli-support';
import { buildModelFile } from './model-build';

interface FetchFlags {
  source?: ModelSource;
  modelId?: string;
  revision?: string;
  variant: ModelVariant;
  cacheDir?: string;
  endpoint?: string;
  rebuild?: boolean;
}

/** The graph is fixed to one square size; it must be the one the preprocessor crops to. */
async function imageSizeFor(fetched: FetchedModel): Promise<number> {
  const size = fixedOutputSize(await loadPreprocessorConfig(fetched.preprocessorConfigPath));
  if (!size || size.height !== size.width) {
    throw new EmbedpoolError(
      'CONFIG_INVALID',
      `${fetched.preprocessorConfigPath} does not give a square crop; cannot choose the model's input size`,
    );
  }
  return size.height;
}

/**
 * The checkpoint becomes `model.onnx` (or `model_fp16.onnx`) in the snapshot directory, like the Xenova
 * layout. The build is written atomically, so an existing file is a complete one and is reused.
 */
async function buildBesideWeights(fetched: FetchedModel, flags: FetchFlags): Promise<string> {
  // Weights found in a user's Hugging Face hub cache stay untouched there: the build goes to our cache.
  const cacheDir = resolve(flags.cacheDir ?? defaultCacheDir());
  const dir = fetched.dir.startsWith(`${cacheDir}/`)
    ? fetched.dir
    : modelCacheDir(cacheDir, fetched.repo, fetched.revision);
  await mkdir(dir, { recursive: true });
  const out = join(dir, flags.variant === 'fp16' ? 'model_fp16.onnx' : 'model.onnx');
  if (existsSync(out) && !flags.rebuild) return out;
  // A with-registers or other checkpoint builds from its own config.json: the builder reads its model_type.
  const summary = await buildModelFile({
    id: fetchedModelId(fetched.repo, fetched.revision, flags.variant),
    config: loadDinov2Config(fetched.configPath),
    weights: fetched.weightsPath!,
    imageSize: await imageSizeFor(fetched),
    dtype: flags.variant === 'fp16' ? 'float16' : 'float32',
    out,
  });
  process.stderr.write(`built ${summary}\n`);
  return out;
}

export function registerModelFetchCommand(model: Command): void {
  model
    .command('fetch')
    .description(
      'download the model into the local cache (from the hub, HF_ENDPOINT or --endpoint) and print its path; ' +
        'a model already in the Hugging Face hub cache (HF_HUB_CACHE, HF_HOME) is used as is; HF_HUB_OFFLINE=1: caches only',
    )
    .addOption(
      new Option(
        '--source <source>',
        'xenova-onnx: ready ONNX export; facebook-safetensors: checkpoint, built here',
      ).choices(['xenova-onnx', 'facebook-safetensors']),
    )
    .option(
      '--model-id <org/name>',
      'hub repository, e.g. facebook/dinov2-small or facebook/dinov2-with-registers-base (default: the ' +
        "source's own; facebook/* models come as safetensors and are built here)",
    )
    .option(
      '--revision <rev>',
      'commit, branch or tag (default: the pinned commit of the default model, else main); a name is ' +
        'resolved to its commit through the hub cache refs or the hub',
    )
    .addOption(
      new Option('--variant <variant>', 'precision of the ONNX model')
        .choices(['fp32', 'fp16'])
        .default(DEFAULT_MODEL_VARIANT),
    )
    .option('--cache-dir <dir>', 'cache directory (default: EMBEDPOOL_CACHE_DIR, else ~/.cache/embedpool)')
    .option(
      '--endpoint <url>',
      'hub base URL (default: HF_ENDPOINT, else https://huggingface.co); HF_TOKEN is sent if set',
    )
    .option('--rebuild', 'facebook-safetensors: build the ONNX model again even if it exists')
    .action(
      runAction(async (flags: FetchFlags) => {
        // facebook/* repositories hold the checkpoint only; every other default source is an ONNX export.
        const source: ModelSource =
          flags.source ??
          (flags.modelId?.startsWith('facebook/') ? 'facebook-safetensors' : DEFAULT_MODEL_SOURCE);
        const fetched = await fetchModel({
          source,
          ...(flags.modelId ? { repo: flags.modelId, revision: flags.revision ?? 'main' } : {}),
          ...(!flags.modelId && flags.revision ? { revision: flags.revision } : {}),
          variant: flags.variant,
          cacheDir: flags.cacheDir,
          endpoint: flags.endpoint,
          // On a terminal the progress bar says it all; elsewhere the info lines are the progress.
          logger: cliLogger('model-fetch', process.stderr.isTTY ? 'warn' : 'info'),
        });
        const modelPath = fetched.modelPath ?? (await buildBesideWeights(fetched, flags));
        // Where it came from, on stderr: stdout stays the path alone.
        process.stderr.write(
          `${fetched.fromCache ? 'found in the cache' : 'downloaded'}: ${fetched.repo}@${fetched.revision} (${fetched.dir})\n`,
        );
        // The id travels with the file: a worker pointed at it by MODEL_PATH reports repo@commit.
        const identity = await writeModelIdentity(
          modelPath,
          fetchedModelId(fetched.repo, fetched.revision, flags.variant),
          { command: 'model fetch', source: fetched.source, repo: fetched.repo, revision: fetched.revision },
        );
        process.stderr.write(`model id ${identity.id} (sha256 ${identity.sha256})\n`);
        process.stdout.write(`${modelPath}\n`);
        return 0;
      }),
    );
}
