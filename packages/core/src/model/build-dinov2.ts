import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { EmbedpoolError } from '../errors';
import { type Dinov2Config, type Dinov2ConfigInput, parseDinov2Config } from './dinov2-config';
import {
  type Dinov2GraphContext,
  emitEmbeddings,
  emitFinalNorm,
  emitLayer,
  type WeightDtype,
} from './dinov2-graph';
import { dinov2ParameterShapes } from './dinov2-params';
import { attr, DataType, GraphBuilder } from './onnx-graph';
import { randomDinov2Weights } from './random-weights';
import { readSafetensors } from './safetensors';
import { numel, type WeightMap } from './weights';

export const DINOV2_OPSET = 17;
export const DEFAULT_IMAGE_SIZE = 224;
// 2 GiB less room for the graph structure and the int64 constants.
const MAX_INLINE_WEIGHT_BYTES = 2 ** 31 - 64 * 2 ** 20;

export interface BuildDinov2Options {
  /** A parsed config, a preset, or the raw contents of a Hugging Face `config.json`. */
  config: Dinov2Config | Dinov2ConfigInput;
  /** A `model.safetensors` path or parameters by HF name; omitted: seeded random weights. */
  weights?: string | WeightMap;
  /** Seed of the random weights (ignored when `weights` is given). Default 0. */
  seed?: number;
  /** Square input size in pixels the graph is fixed to. Default 224. */
  imageSize?: number;
  /**
   * Storage and compute precision of the weights. 'float16' halves the file and keeps float32 input and
   * outputs (Cast at both ends), like the Xenova `model_fp16.onnx` exports. Default 'float32'.
   */
  dtype?: WeightDtype;
}

export interface Dinov2Build {
  model: Uint8Array;
  /** Parameter count of the source `Dinov2Model` (what HF's `num_parameters()` reports). */
  params: number;
  /** Tokens per image in `last_hidden_state`: 1 (CLS) + the patch grid. */
  tokens: number;
  hiddenSize: number;
}

// Checkpoints of task models (Dinov2ForImageClassification, ...) nest the backbone under `dinov2.`.
function stripBackbonePrefix(weights: WeightMap): WeightMap {
  if (weights.has('embeddings.cls_token') || !weights.has('dinov2.embeddings.cls_token')) return weights;
  const out: WeightMap = new Map();
  for (const [name, t] of weights) if (name.startsWith('dinov2.')) out.set(name.slice(7), t);
  return out;
}

function resolveWeights(config: Dinov2Config, opts: BuildDinov2Options): WeightMap {
  if (opts.weights === undefined) return randomDinov2Weights(config, opts.seed ?? 0);
  return stripBackbonePrefix(typeof opts.weights === 'string' ? readSafetensors(opts.weights) : opts.weights);
}

/** Builds the graph and reports what it holds; see buildDinov2Onnx. */
export function buildDinov2(opts: BuildDinov2Options): Dinov2Build {
  const config = parseDinov2Config(opts.config);
  const imageSize = opts.imageSize ?? DEFAULT_IMAGE_SIZE;
  if (!Number.isInteger(imageSize) || imageSize < config.patch_size) {
    throw new EmbedpoolError('MODEL_INVALID', `imageSize ${imageSize} must be an integer >= patch_size`);
  }
  const dtype = opts.dtype ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float16') {
    throw new EmbedpoolError('MODEL_INVALID', `dtype must be float32 or float16, not ${String(dtype)}`);
  }
  const params = dinov2ParameterShapes(config).reduce((n, [, shape]) => n + numel(shape), 0);
  // A ModelProto is one protobuf message, capped at 2 GiB; checked before any weight is read or made.
  const weightBytes = params * (dtype === 'float16' ? 2 : 4);
  if (weightBytes > MAX_INLINE_WEIGHT_BYTES) {
    throw new EmbedpoolError(
      'MODEL_INVALID',
      `${params} parameters in ${dtype} need ${weightBytes} bytes, over ONNX's 2 GiB single-file limit (external data is not supported)`,
    );
  }
  const weights = resolveWeights(config, opts);
  const g = new GraphBuilder();
  const ctx: Dinov2GraphContext = { g, config, weights, dtype };
  const h = config.hidden_size;
  const grid = Math.floor(imageSize / config.patch_size);
  const tokens = 1 + config.num_register_tokens + grid * grid;

  const pixels = g.input('pixel_values', DataType.FLOAT, [
    'batch_size',
    config.num_channels,
    imageSize,
    imageSize,
  ]);
  let x = emitEmbeddings(
    ctx,
    dtype === 'float16'
      ? g.node('Cast', [pixels], 'pixel_values_fp16', [attr.int('to', DataType.FLOAT16)])
      : pixels,
    imageSize,
  );
  for (let i = 0; i < config.num_hidden_layers; i++) x = emitLayer(ctx, x, i);
  const normed = emitFinalNorm(ctx, x);

  // Outputs are float32 whatever the weights are, so callers never handle half floats.
  const last =
    dtype === 'float16'
      ? g.namedNode('Cast', [normed], 'last_hidden_state', [attr.int('to', DataType.FLOAT)])
      : g.namedNode('Identity', [normed], 'last_hidden_state');
  g.namedNode('Gather', [last, g.int64([0], [])], 'pooler_output', [attr.int('axis', 1)]);
  g.output('last_hidden_state', DataType.FLOAT, ['batch_size', tokens, h]);
  g.output('pooler_output', DataType.FLOAT, ['batch_size', h]);

  const model = g.encode({
    graphName: 'dinov2',
    opset: DINOV2_OPSET,
    producer: 'embedpool',
    docString: `DINOv2 hidden=${h} layers=${config.num_hidden_layers} heads=${config.num_attention_heads} patch=${config.patch_size} image=${imageSize} dtype=${dtype}`,
  });
  return { model, params, tokens, hiddenSize: h };
}

/**
 * Builds a DINOv2 (`Dinov2Model`) ONNX graph at opset 17: input `pixel_values` float32
 * [batch_size, C, imageSize, imageSize]; outputs `last_hidden_state` [batch_size, 1 + N, hidden] and
 * `pooler_output` [batch_size, hidden] (CLS after the final LayerNorm), both float32.
 */
export function buildDinov2Onnx(opts: BuildDinov2Options): Uint8Array {
  return buildDinov2(opts).model;
}

/** Builds and writes atomically (temp file in the same directory, then rename), so readers never see half a model. */
export async function writeDinov2Onnx(
  opts: BuildDinov2Options & { out: string },
): Promise<{ bytes: number; params: number }> {
  const { model, params } = buildDinov2(opts);
  await mkdir(dirname(opts.out), { recursive: true });
  const tmp = join(dirname(opts.out), `.${basename(opts.out)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, model);
    await rename(tmp, opts.out);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return { bytes: model.length, params };
}
