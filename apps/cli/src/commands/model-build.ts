import { mkdir } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { EmbedpoolError } from '@embedpool/core/errors';
import {
  DEFAULT_IMAGE_SIZE,
  DINOV2_PRESETS,
  type Dinov2Config,
  loadDinov2Config,
  type WeightDtype,
  writeDinov2Onnx,
} from '@embedpool/core/model';
import { sha256File } from '@embedpool/core/model-fetch';
import { randomModelId, writeModelIdentity } from '@embedpool/core/model-identity';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { nonNegativeInt, positiveInt, requireModelFile, runAction } from './cli-support';

/** The four sizes, with and without registers (facebook/<name> on the hub). */
export const PRESETS: Readonly<Record<string, Dinov2Config>> = DINOV2_PRESETS;

const PRESET_NAMES = Object.keys(PRESETS).join(', ');

/** A preset name, else a path to a Hugging Face `config.json`. */
export function resolveDinov2Config(value: string): Dinov2Config {
  const preset = Object.hasOwn(PRESETS, value) ? PRESETS[value] : undefined;
  if (preset) return preset;
  try {
    return loadDinov2Config(value);
  } catch (err) {
    if (err instanceof EmbedpoolError && err.code === 'MODEL_NOT_FOUND') {
      throw new EmbedpoolError(
        'MODEL_NOT_FOUND',
        `${err.message}: no such file, and not a preset (${PRESET_NAMES})`,
        { cause: err },
      );
    }
    throw err;
  }
}

export interface BuildModelOptions {
  /** The id recorded beside the model; default: from the preset and seed, or the weights' sha256. */
  id?: string;
  /** The preset name when `config` is one (names the random build: `random-dinov2-base-seed0`). */
  preset?: string;
  config: Dinov2Config;
  weights?: string;
  seed?: number;
  imageSize: number;
  dtype: WeightDtype;
  out: string;
}

/** Builds and writes the model; the summary line is what `model build` prints. */
export async function buildModelFile(opts: BuildModelOptions): Promise<string> {
  if (opts.weights !== undefined) await requireModelFile(opts.weights, 'weights file');
  await mkdir(dirname(resolve(opts.out)), { recursive: true });
  const { params, bytes } = await writeDinov2Onnx({
    config: opts.config,
    weights: opts.weights,
    seed: opts.seed,
    imageSize: opts.imageSize,
    dtype: opts.dtype,
    out: opts.out,
  });
  const weights = opts.weights === undefined ? `random(seed=${opts.seed ?? 0})` : opts.weights;
  const identity = await writeModelIdentity(opts.out, opts.id ?? (await defaultBuildId(opts)), {
    command: 'model build',
    weights,
    dtype: opts.dtype,
    imageSize: opts.imageSize,
  });
  return (
    `params=${params} bytes=${bytes} dtype=${opts.dtype} image_size=${opts.imageSize} ` +
    `weights=${weights} id=${identity.id} path=${resolve(opts.out)}`
  );
}

/**
 * Random weights: `random-<preset>-seed<n>`; a checkpoint: `<file name>@sha256:<12 hex of its bytes>`, so
 * the id changes with the weights. Half precision gets `:fp16` (its vectors differ slightly).
 */
async function defaultBuildId(opts: BuildModelOptions): Promise<string> {
  const base =
    opts.weights === undefined
      ? randomModelId(opts.preset ?? 'dinov2-custom', opts.seed ?? 0)
      : `${basename(opts.weights)}@sha256:${(await sha256File(opts.weights)).slice(0, 12)}`;
  return opts.dtype === 'float16' ? `${base}:fp16` : base;
}

// The generator keeps 32 bits of state: larger seeds would silently alias smaller ones.
function seedInt(value: string): number {
  const n = nonNegativeInt(value);
  if (n > 0xffffffff) throw new InvalidArgumentError('must be at most 4294967295.');
  return n;
}

interface BuildFlags {
  id?: string;
  config: string;
  weights?: string;
  seed?: number;
  imageSize: number;
  dtype: WeightDtype;
  out: string;
}

export function registerModelBuildCommand(model: Command): void {
  model
    .command('build')
    .description('build a DINOv2 ONNX model from a Hugging Face config (and safetensors weights)')
    .requiredOption('--config <config.json|preset>', `Hugging Face config.json, or a preset: ${PRESET_NAMES}`)
    .option('--weights <model.safetensors>', 'Dinov2Model weights; omitted: deterministic random weights')
    .option('--seed <n>', 'seed of the random weights (without --weights); default 0', seedInt)
    .option('--image-size <n>', 'square input size the graph is fixed to', positiveInt, DEFAULT_IMAGE_SIZE)
    .addOption(
      new Option('--dtype <dtype>', 'weight precision (inputs and outputs stay float32)')
        .choices(['float32', 'float16'])
        .default('float32'),
    )
    .requiredOption('--out <model.onnx>', 'where to write the model (atomically)')
    .option(
      '--id <id>',
      'model id recorded in <out>.identity.json (default: random-<preset>-seed<n>, or the weights file and its sha256)',
    )
    .action(
      runAction(async (flags: BuildFlags) => {
        if (flags.weights !== undefined && flags.seed !== undefined) {
          process.stderr.write('embedpool: warning: --seed is ignored with --weights\n');
        }
        const summary = await buildModelFile({
          ...flags,
          config: resolveDinov2Config(flags.config),
          ...(Object.hasOwn(PRESETS, flags.config) ? { preset: flags.config } : {}),
        });
        process.stdout.write(`${summary}\n`);
        return 0;
      }),
    );
}
