import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { readModelIdentity, writeModelIdentity } from '@embedpool/core/model-identity';
import { loadPreprocessorConfig } from '@embedpool/core/preprocess';
import { type Agreement, type QuantizeResult, quantizeModel } from '@embedpool/core/quantize';
import { type Command, InvalidArgumentError, Option } from 'commander';
import {
  disableOrtTelemetry,
  EXIT_FAILURE,
  EXIT_OK,
  nonNegativeInt,
  requireModelFile,
  runAction,
} from './cli-support';

/** A cosine threshold: a number in (0, 1]. */
export function cosineArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 1) {
    throw new InvalidArgumentError('must be a number in (0, 1].');
  }
  return n;
}

function unitArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) {
    throw new InvalidArgumentError('must be a number in [0, 1].');
  }
  return n;
}

const f4 = (x: number) => x.toFixed(4);

/** The lines both `quantize` and `compare` print about an agreement. */
export function agreementLines(a: Agreement): string[] {
  return [
    `  images:     ${a.images}`,
    `  cosine:     min ${f4(a.minCosine)}  mean ${f4(a.meanCosine)}`,
    `  norm ratio: ${f4(a.minNormRatio)} .. ${f4(a.maxNormRatio)} (candidate / reference)`,
    `  worst:      ${a.worst.name} (cosine ${f4(a.worst.cosine)}, norm ratio ${f4(a.worst.normRatio)})`,
  ];
}

function summary(r: QuantizeResult, out: string, written: boolean): string {
  return [
    `source:      ${r.source.id} (sha256 ${r.source.sha256})`,
    `method:      ${r.metadata['embedpool.quantization.method']}${r.metadata['embedpool.quantization.alpha'] ? ` alpha=${r.metadata['embedpool.quantization.alpha']}` : ''}, weights int${r.metadata['embedpool.quantization.weight_bits']} per column`,
    `matmuls:     ${r.rewrite.quantized.length} of ${r.matmuls} in int8${r.rewrite.keptFloat.length ? `; float32: ${r.rewrite.keptFloat.join(', ')}` : ''}`,
    `calibration: min cosine ${f4(r.calibration.minCosine)} on ${r.calibration.images} photos`,
    `held-out photos (the gate, min cosine ${r.minCosine}):`,
    ...agreementLines(r.gate),
    written
      ? `wrote ${resolve(out)} (${r.model.length} bytes)`
      : `REFUSED: min cosine ${f4(r.gate.minCosine)} < ${r.minCosine} on ${r.gate.worst.name}; nothing written`,
  ].join('\n');
}

async function writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  await mkdir(dirname(resolve(path)), { recursive: true });
  const tmp = join(dirname(resolve(path)), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

interface QuantizeFlags {
  out: string;
  calibration?: string;
  holdout?: string;
  minCosine: number;
  method: 'smoothquant' | 'naive';
  alpha: number;
  weightBits: string;
  keepFloat?: string[];
  maxFloatFallback: number;
  sourceId?: string;
  preprocessorConfig?: string;
  threads: number;
  json?: boolean;
}

export function registerModelQuantizeCommand(model: Command): void {
  model
    .command('quantize')
    .description(
      'make an int8 copy of a float32 model for CPUs (SmoothQuant + DynamicQuantizeMatMul), checked against ' +
        'the original on held-out photos: below --min-cosine nothing is written',
    )
    .argument('<in.onnx>', 'float32 ONNX model (embedpool model build, or a torch / Xenova export)')
    .requiredOption('--out <out.onnx>', 'where to write the int8 model (atomically, only if it passes)')
    .option('--calibration <dir>', 'photos to gather activation statistics on (default: shipped photos)')
    .option('--holdout <dir>', 'other photos for the quality gate (default: shipped held-out photos)')
    .option(
      '--min-cosine <x>',
      'lowest cosine to the float32 model allowed on any held-out photo',
      cosineArg,
      0.995,
    )
    .addOption(
      new Option(
        '--method <method>',
        'smoothquant: fold per-channel scales into the LayerNorms first; naive: plain int8',
      )
        .choices(['smoothquant', 'naive'])
        .default('smoothquant'),
    )
    .option('--alpha <x>', 'SmoothQuant migration strength in [0, 1]', unitArg, 0.5)
    .addOption(
      new Option('--weight-bits <n>', '7 avoids int16 saturation in AVX2 (non-VNNI) int8 kernels')
        .choices(['8', '7'])
        .default('8'),
    )
    .option(
      '--keep-float <node>',
      'a MatMul node to keep in float32 (repeatable)',
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
    )
    .option(
      '--max-float-fallback <n>',
      'MatMuls that may fall back to float32, most outlier-prone first, while calibration photos score below --min-cosine',
      nonNegativeInt,
      4,
    )
    .option('--source-id <id>', "the source model's id for the output's metadata (default: from the model)")
    .option('--preprocessor-config <file>', 'Hugging Face preprocessor_config.json (default: dinov2-base)')
    .option(
      '--threads <n>',
      'onnxruntime intra-op threads while measuring (0: one per core)',
      nonNegativeInt,
      0,
    )
    .option('--json', 'machine-readable result on stdout')
    .addHelpText(
      'after',
      '\nExit status: 0 written; 1 refused by the quality gate (the numbers are printed) or failed.\n',
    )
    .action(runAction(quantize));
}

/** `embedpool model quantize`: calibrate, quantize to int8, check the cosine against fp32, write the file. */
async function quantize(input: string, flags: QuantizeFlags): Promise<number> {
  disableOrtTelemetry();
  await requireModelFile(input);
  const preprocessor = flags.preprocessorConfig
    ? await loadPreprocessorConfig(flags.preprocessorConfig)
    : undefined;
  // The source's recorded identity (model build/fetch write one beside the file) names the output.
  const sourceIdentity = await readModelIdentity(input);
  const sourceId =
    flags.sourceId ?? (sourceIdentity.status === 'ok' ? sourceIdentity.identity.id : undefined);
  const result = await quantizeModel({
    input,
    method: flags.method,
    alpha: flags.alpha,
    weightBits: flags.weightBits === '7' ? 7 : 8,
    minCosine: flags.minCosine,
    maxFloatFallback: flags.maxFloatFallback,
    threads: flags.threads,
    log: (line) => process.stderr.write(`embedpool: ${line}\n`),
    ...(flags.calibration ? { calibrationDir: flags.calibration } : {}),
    ...(flags.holdout ? { holdoutDir: flags.holdout } : {}),
    ...(flags.keepFloat ? { keepFloat: flags.keepFloat } : {}),
    ...(sourceId ? { sourceId } : {}),
    ...(preprocessor ? { preprocessor } : {}),
  });
  if (result.passed) {
    await writeAtomically(flags.out, result.model);
    // An id of its own, so workers (production refuses a model without one) report what they serve.
    await writeModelIdentity(flags.out, `${result.source.id}:int8`, {
      quantizedFrom: result.source,
      method: result.metadata['embedpool.quantization.method'],
    });
  }
  if (flags.json) {
    const { model: _bytes, ...rest } = result;
    const report = { ...rest, written: result.passed ? resolve(flags.out) : null };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    const text = `${summary(result, flags.out, result.passed)}\n`;
    // A refusal is an error: its numbers go where errors go, so a pipeline's stdout stays clean.
    (result.passed ? process.stdout : process.stderr).write(text);
  }
  return result.passed ? EXIT_OK : EXIT_FAILURE;
}
