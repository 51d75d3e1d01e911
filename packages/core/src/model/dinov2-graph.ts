import { EmbedpoolError } from '../errors';
import { type Dinov2Config, mlpHiddenSize, usesRegisterInterpolation } from './dinov2-config';
import { float32ToFloat16 } from './half';
import { packBiases, packLinearWeights } from './linear';
import { attr, DataType, type GraphBuilder } from './onnx-graph';
import { interpolatePosEmbed } from './pos-embed';
import { optionalWeight, requireWeight, type WeightMap, type WeightTensor } from './weights';

export type WeightDtype = 'float32' | 'float16';

/** What every block emitter needs: the graph, the architecture, the weights and the precision. */
export interface Dinov2GraphContext {
  g: GraphBuilder;
  config: Dinov2Config;
  weights: WeightMap;
  dtype: WeightDtype;
}

function act(ctx: Dinov2GraphContext): DataType {
  return ctx.dtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT;
}

/** Adds a weight initializer in the graph's precision. */
function weight(ctx: Dinov2GraphContext, name: string, data: Float32Array, dims: number[]): string {
  return ctx.g.weight(name, ctx.dtype === 'float16' ? float32ToFloat16(data) : data, dims);
}

function layerNorm(ctx: Dinov2GraphContext, x: string, prefix: string, out: string): string {
  const h = ctx.config.hidden_size;
  const gamma = requireWeight(ctx.weights, `${prefix}.weight`, [h]);
  const beta = requireWeight(ctx.weights, `${prefix}.bias`, [h]);
  return ctx.g.node(
    'LayerNormalization',
    [x, weight(ctx, `${prefix}.weight`, gamma.data, [h]), weight(ctx, `${prefix}.bias`, beta.data, [h])],
    out,
    [attr.int('axis', -1), attr.float('epsilon', ctx.config.layer_norm_eps)],
  );
}

/** x @ W^T + b for a PyTorch Linear, as MatMul on a pre-transposed weight plus Add. */
function linear(ctx: Dinov2GraphContext, x: string, prefix: string, inDim: number, outDim: number): string {
  const w = requireWeight(ctx.weights, `${prefix}.weight`, [outDim, inDim]);
  const b = requireWeight(ctx.weights, `${prefix}.bias`, [outDim]);
  const packed = packLinearWeights([{ data: w.data, out: outDim }], inDim);
  const mm = ctx.g.node(
    'MatMul',
    [x, weight(ctx, `${prefix}.weight_t`, packed, [inDim, outDim])],
    `${prefix}/MatMul`,
  );
  return ctx.g.node('Add', [mm, weight(ctx, `${prefix}.bias`, b.data, [outDim])], `${prefix}/Add`);
}

/** Patch conv -> tokens, plus the CLS token, plus the (interpolated) position embedding. */
export function emitEmbeddings(ctx: Dinov2GraphContext, pixels: string, imageSize: number): string {
  const { g, config } = ctx;
  const h = config.hidden_size;
  const p = config.patch_size;
  const srcGrid = Math.floor(config.image_size / p);
  const grid = Math.floor(imageSize / p);

  const convW = requireWeight(ctx.weights, 'embeddings.patch_embeddings.projection.weight', [
    h,
    config.num_channels,
    p,
    p,
  ]);
  const convB = requireWeight(ctx.weights, 'embeddings.patch_embeddings.projection.bias', [h]);
  const conv = g.node(
    'Conv',
    [
      pixels,
      weight(ctx, 'embeddings.patch_embeddings.projection.weight', convW.data, [...convW.shape]),
      weight(ctx, 'embeddings.patch_embeddings.projection.bias', convB.data, [h]),
    ],
    'embeddings/patch_embeddings/Conv',
    [attr.ints('kernel_shape', [p, p]), attr.ints('strides', [p, p])],
  );
  // [B, h, g, g] -> [B, h, N] -> [B, N, h]; 0 copies the (dynamic) batch dimension.
  const flat = g.node('Reshape', [conv, g.int64([0, h, -1])], 'embeddings/patch_embeddings/Reshape');
  const tokens = g.node('Transpose', [flat], 'embeddings/patch_embeddings/Transpose', [
    attr.ints('perm', [0, 2, 1]),
  ]);

  const cls = requireWeight(ctx.weights, 'embeddings.cls_token', [1, 1, h]);
  const pos = requireWeight(ctx.weights, 'embeddings.position_embeddings', [1, 1 + srcGrid * srcGrid, h]);
  const posAt = interpolatePosEmbed(pos.data, srcGrid, grid, h, {
    antialias: usesRegisterInterpolation(config),
  });
  // cls + pos[0] is input-independent: add it here (in float32, as the reference does at run time).
  const clsPos = new Float32Array(h);
  for (let i = 0; i < h; i++) clsPos[i] = cls.data[i]! + posAt[i]!;
  const patchPos = posAt.subarray(h);

  const withPos = g.node(
    'Add',
    [tokens, weight(ctx, 'embeddings.patch_position_embeddings', patchPos, [1, grid * grid, h])],
    'embeddings/AddPosition',
  );
  const batch = g.node('Shape', [tokens], 'embeddings/batch', [attr.int('start', 0), attr.int('end', 1)]);
  const clsShape = g.node('Concat', [batch, g.int64([1, h])], 'embeddings/cls_shape', [attr.int('axis', 0)]);
  const clsTokens = g.node(
    'Expand',
    [weight(ctx, 'embeddings.cls_token_with_position', clsPos, [1, 1, h]), clsShape],
    'embeddings/cls',
  );
  const R = config.num_register_tokens;
  if (R === 0) return g.node('Concat', [clsTokens, withPos], 'embeddings/Concat', [attr.int('axis', 1)]);
  // Registers sit between CLS and the patches, with no position embedding of their own.
  const reg = requireWeight(ctx.weights, 'embeddings.register_tokens', [1, R, h]);
  const regShape = g.node('Concat', [batch, g.int64([R, h])], 'embeddings/register_shape', [
    attr.int('axis', 0),
  ]);
  const registers = g.node(
    'Expand',
    [weight(ctx, 'embeddings.register_tokens', reg.data, [1, R, h]), regShape],
    'embeddings/registers',
  );
  return g.node('Concat', [clsTokens, registers, withPos], 'embeddings/Concat', [attr.int('axis', 1)]);
}

/**
 * Multi-head self-attention with one packed QKV GEMM. The 1/sqrt(d) score scale is folded into the
 * query weights and bias, which removes a full [B, H, T, T] Div per layer.
 */
function emitAttention(ctx: Dinov2GraphContext, x: string, l: string): string {
  const { g, config } = ctx;
  const h = config.hidden_size;
  const heads = config.num_attention_heads;
  const d = h / heads;
  const scale = 1 / Math.sqrt(d);
  const pre = `${l}.attention.attention`;
  const q = requireWeight(ctx.weights, `${pre}.query.weight`, [h, h]);
  const k = requireWeight(ctx.weights, `${pre}.key.weight`, [h, h]);
  const v = requireWeight(ctx.weights, `${pre}.value.weight`, [h, h]);
  const qkvW = packLinearWeights(
    [
      { data: q.data, out: h, scale },
      { data: k.data, out: h },
      { data: v.data, out: h },
    ],
    h,
  );
  let qkv = g.node('MatMul', [x, weight(ctx, `${pre}.qkv.weight_t`, qkvW, [h, 3 * h])], `${l}/qkv/MatMul`);
  const biases = ['query', 'key', 'value'].map((n) =>
    config.qkv_bias
      ? requireWeight(ctx.weights, `${pre}.${n}.bias`, [h])
      : optionalWeight(ctx.weights, `${pre}.${n}.bias`, [h]),
  );
  if (biases.every((b): b is WeightTensor => b !== undefined)) {
    const qkvB = packBiases([
      { data: biases[0]!.data, scale },
      { data: biases[1]!.data },
      { data: biases[2]!.data },
    ]);
    qkv = g.node('Add', [qkv, weight(ctx, `${pre}.qkv.bias`, qkvB, [3 * h])], `${l}/qkv/Add`);
  } else if (biases.some((b) => b !== undefined)) {
    throw new EmbedpoolError('MODEL_INVALID', `${pre}: some but not all of query/key/value have a bias`);
  }
  const [qs, ks, vs] = g.nodeMulti(
    'Split',
    [qkv, g.int64([h, h, h])],
    [`${l}/q`, `${l}/k`, `${l}/v`],
    [attr.int('axis', -1)],
  ) as [string, string, string];
  const headShape = g.int64([0, 0, heads, d]);
  const split = (t: string, perm: number[], name: string) =>
    g.node(
      'Transpose',
      [g.node('Reshape', [t, headShape], `${l}/${name}/Reshape`)],
      `${l}/${name}/Transpose`,
      [attr.ints('perm', perm)],
    );
  const qh = split(qs, [0, 2, 1, 3], 'q'); // [B, H, T, d]
  const khT = split(ks, [0, 2, 3, 1], 'k'); // [B, H, d, T]
  const vh = split(vs, [0, 2, 1, 3], 'v'); // [B, H, T, d]
  const scores = g.node('MatMul', [qh, khT], `${l}/scores`);
  const probs = g.node('Softmax', [scores], `${l}/Softmax`, [attr.int('axis', -1)]);
  const ctxh = g.node('MatMul', [probs, vh], `${l}/context`);
  const merged = g.node(
    'Reshape',
    [
      g.node('Transpose', [ctxh], `${l}/context/Transpose`, [attr.ints('perm', [0, 2, 1, 3])]),
      g.int64([0, 0, h]),
    ],
    `${l}/context/Reshape`,
  );
  return linear(ctx, merged, `${l}.attention.output.dense`, h, h);
}

/** GELU written exactly as PyTorch exports it, the pattern ORT's GeluFusion recognises. */
function gelu(ctx: Dinov2GraphContext, x: string, l: string): string {
  const { g } = ctx;
  const t = act(ctx);
  const erf = g.node('Erf', [g.node('Div', [x, g.scalar(Math.SQRT2, t)], `${l}/gelu/Div`)], `${l}/gelu/Erf`);
  const onePlus = g.node('Add', [erf, g.scalar(1, t)], `${l}/gelu/Add`);
  const prod = g.node('Mul', [x, onePlus], `${l}/gelu/Mul`);
  return g.node('Mul', [prod, g.scalar(0.5, t)], `${l}/gelu/Half`);
}

function emitMlp(ctx: Dinov2GraphContext, x: string, l: string): string {
  const h = ctx.config.hidden_size;
  const inner = mlpHiddenSize(ctx.config);
  if (!ctx.config.use_swiglu_ffn) {
    const hidden = gelu(ctx, linear(ctx, x, `${l}.mlp.fc1`, h, inner), l);
    return linear(ctx, hidden, `${l}.mlp.fc2`, inner, h);
  }
  // SwiGLU (ViT-g): weights_in yields [gate | up]; out = weights_out(silu(gate) * up).
  const { g } = ctx;
  const both = linear(ctx, x, `${l}.mlp.weights_in`, h, 2 * inner);
  const [gate, up] = g.nodeMulti(
    'Split',
    [both, g.int64([inner, inner])],
    [`${l}/mlp/gate`, `${l}/mlp/up`],
    [attr.int('axis', -1)],
  ) as [string, string];
  const silu = g.node('Mul', [gate, g.node('Sigmoid', [gate], `${l}/mlp/Sigmoid`)], `${l}/mlp/silu`);
  const hidden = g.node('Mul', [silu, up], `${l}/mlp/gated`);
  return linear(ctx, hidden, `${l}.mlp.weights_out`, inner, h);
}

function layerScale(ctx: Dinov2GraphContext, x: string, name: string): string {
  const h = ctx.config.hidden_size;
  const lambda = requireWeight(ctx.weights, name, [h]);
  return ctx.g.node('Mul', [x, weight(ctx, name, lambda.data, [h])], name.replaceAll('.', '/'));
}

/** One pre-norm block: x + ls1 * attn(norm1(x)), then x + ls2 * mlp(norm2(x)). */
export function emitLayer(ctx: Dinov2GraphContext, x: string, index: number): string {
  const { g } = ctx;
  const l = `encoder.layer.${index}`;
  const attn = emitAttention(ctx, layerNorm(ctx, x, `${l}.norm1`, `${l}/norm1`), l);
  const x1 = g.node('Add', [x, layerScale(ctx, attn, `${l}.layer_scale1.lambda1`)], `${l}/residual1`);
  const mlp = emitMlp(ctx, layerNorm(ctx, x1, `${l}.norm2`, `${l}/norm2`), l);
  return g.node('Add', [x1, layerScale(ctx, mlp, `${l}.layer_scale2.lambda1`)], `${l}/residual2`);
}

/** Final LayerNorm; returns the normalised sequence in the activation precision. */
export function emitFinalNorm(ctx: Dinov2GraphContext, x: string): string {
  return layerNorm(ctx, x, 'layernorm', 'layernorm');
}
