import type { ChannelStats } from './activation-stats';
import type { MatMulGroup, WeightMatMul } from './matmul-plan';
import {
  floatData,
  floatTensor,
  importDomain,
  int8Tensor,
  type ModelProto,
  MS_DOMAIN,
  type NodeProto,
  type TensorProto,
} from './onnx-io';

export interface RewriteOptions {
  /** SmoothQuant migration strength: 0 leaves activations alone, 1 moves all their range into the weights. */
  alpha: number;
  /** false: plain per-channel int8 ("naive"), the baseline that outlier channels break. */
  smooth: boolean;
  /** Weight bits: 8 (int8, [-127, 127]) or 7 ([-63, 63], for CPUs whose int8 kernels can saturate). */
  weightBits: 7 | 8;
  /** MatMuls (by node name) left in float32. Their groups are still smoothed: that is exact in float32. */
  keepFloat: ReadonlySet<string>;
}

export interface RewriteReport {
  quantized: string[];
  keptFloat: string[];
  smoothedGroups: number;
  /** Largest and median smoothing factor over all smoothed channels (how hard the outliers were). */
  smoothScale: { max: number; median: number } | null;
}

/** Per input channel j: s_j = max|x_j|^alpha / max|w_j|^(1-alpha) (SmoothQuant, Xiao et al. 2022). */
export function smoothingScales(
  act: Float32Array,
  weights: { data: Float32Array; n: number }[],
  alpha: number,
): Float32Array {
  const k = act.length;
  const wMax = new Float32Array(k);
  for (const { data, n } of weights) {
    for (let j = 0; j < k; j++) {
      let m = wMax[j]!;
      const row = j * n;
      for (let c = 0; c < n; c++) {
        const v = Math.abs(data[row + c]!);
        if (v > m) m = v;
      }
      wMax[j] = m;
    }
  }
  const s = new Float32Array(k);
  for (let j = 0; j < k; j++) {
    const a = act[j]!;
    const w = wMax[j]!;
    // A channel never active on the calibration set, or a dead weight row, is left as it is.
    const v = a > 0 && w > 0 ? a ** alpha / w ** (1 - alpha) : 1;
    s[j] = Math.min(1e4, Math.max(1e-4, Number.isFinite(v) ? v : 1));
  }
  return s;
}

/** Symmetric per-output-column quantization of a [k, n] weight. */
export function quantizeColumns(
  w: Float32Array,
  k: number,
  n: number,
  bits: 7 | 8,
): { q: Int8Array; scale: Float32Array } {
  const qmax = bits === 8 ? 127 : 63;
  const scale = new Float32Array(n);
  for (let j = 0; j < k; j++) {
    const row = j * n;
    for (let c = 0; c < n; c++) {
      const v = Math.abs(w[row + c]!);
      if (v > scale[c]!) scale[c] = v;
    }
  }
  for (let c = 0; c < n; c++) scale[c] = scale[c]! > 0 ? scale[c]! / qmax : 1;
  const q = new Int8Array(k * n);
  for (let j = 0; j < k; j++) {
    const row = j * n;
    for (let c = 0; c < n; c++) {
      const v = Math.round(w[row + c]! / scale[c]!);
      q[row + c] = Math.min(qmax, Math.max(-qmax, v));
    }
  }
  return { q, scale };
}

class Names {
  private readonly used = new Set<string>();

  constructor(model: ModelProto) {
    const g = model.graph!;
    for (const t of g.initializer ?? []) if (t.name) this.used.add(t.name);
    for (const n of g.node ?? []) for (const v of [...(n.input ?? []), ...(n.output ?? [])]) this.used.add(v);
    for (const v of [...(g.input ?? []), ...(g.output ?? [])]) if (v.name) this.used.add(v.name);
  }

  fresh(base: string): string {
    let name = base;
    for (let i = 2; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
  }
}

function replaceInput(node: NodeProto, from: string, to: string): void {
  node.input = (node.input ?? []).map((i) => (i === from ? to : i));
}

/**
 * Folds the smoothing scales into the LayerNorm (or Mul/Add) before a group: its gamma and beta divided by
 * `s`, as new tensors, so the MatMuls' inputs come out divided by what their weights were multiplied by.
 */
function divideSite(
  site: NonNullable<MatMulGroup['site']>,
  s: Float32Array | number[],
  names: Names,
  added: TensorProto[],
): void {
  const divide = (t: TensorProto, node: NodeProto) => {
    const v = floatData(t);
    for (let j = 0; j < v.length; j++) v[j] = v[j]! / s[j]!;
    const name = names.fresh(`${t.name}_smoothed`);
    added.push(floatTensor(name, v, (t.dims ?? []).map(Number)));
    replaceInput(node, t.name!, name);
  };
  if (site.kind === 'layernorm') {
    divide(site.gamma, site.node);
    if (site.beta) divide(site.beta, site.node);
  } else {
    divide(site.gamma, site.mul);
    divide(site.beta, site.add);
  }
}

/** One MatMul to DynamicQuantizeMatMul: per-column int8 weights and scales, its bias Add folded in. */
function quantizeMatMul(
  m: WeightMatMul,
  w: Float32Array,
  weightBits: RewriteOptions['weightBits'],
  names: Names,
  out: { added: TensorProto[]; dropped: Set<NodeProto> },
): void {
  const { added, dropped } = out;
  const node = m.node;
  const { q, scale } = quantizeColumns(w, m.k, m.n, weightBits);
  const qName = names.fresh(`${m.weight.name}_int8`);
  const sName = names.fresh(`${m.weight.name}_scale`);
  added.push(int8Tensor(qName, q, [m.k, m.n]), floatTensor(sName, scale, [m.n]));
  const inputs = [m.input, qName, sName];
  let output = node.output![0]!;
  if (m.biasAdd) {
    inputs.push('', m.biasAdd.bias.name!);
    output = m.biasAdd.node.output![0]!;
    dropped.add(m.biasAdd.node);
  }
  node.opType = 'DynamicQuantizeMatMul';
  node.domain = MS_DOMAIN;
  node.input = inputs;
  node.output = [output];
  node.attribute = [];
}

/**
 * Rewrites `model` in place (pass a clone): folds smoothing scales into the LayerNorms in front of the
 * weight MatMuls, then turns each MatMul (and its bias Add) into com.microsoft DynamicQuantizeMatMul
 * with int8 per-column weights. Activations are quantized per tensor at run time by onnxruntime.
 */
export function rewriteInt8(
  model: ModelProto,
  groups: MatMulGroup[],
  stats: ReadonlyMap<string, ChannelStats>,
  opts: RewriteOptions,
): RewriteReport {
  const g = model.graph!;
  const names = new Names(model);
  const added: TensorProto[] = [];
  const dropped = new Set<NodeProto>();
  const report: RewriteReport = { quantized: [], keptFloat: [], smoothedGroups: 0, smoothScale: null };
  const allScales: number[] = [];
  // New weights by MatMul, after smoothing (float32).
  const weightOf = new Map<WeightMatMul, Float32Array>();

  for (const group of groups) {
    for (const m of group.matmuls) weightOf.set(m, floatData(m.weight));
    const act = stats.get(group.input);
    if (!opts.smooth || !group.site || !act) continue;
    const s = smoothingScales(
      act.absMax,
      group.matmuls.map((m) => ({ data: weightOf.get(m)!, n: m.n })),
      opts.alpha,
    );
    for (const m of group.matmuls) {
      const w = weightOf.get(m)!;
      for (let j = 0; j < m.k; j++) {
        const sj = s[j]!;
        const row = j * m.n;
        for (let c = 0; c < m.n; c++) w[row + c] = w[row + c]! * sj;
      }
    }
    divideSite(group.site, s, names, added);
    report.smoothedGroups++;
    for (const v of s) allScales.push(v);
  }

  for (const group of groups) {
    for (const m of group.matmuls) {
      const w = weightOf.get(m)!;
      const node = m.node;
      if (opts.keepFloat.has(m.name)) {
        report.keptFloat.push(m.name);
        if (w !== undefined && opts.smooth && group.site && stats.has(group.input)) {
          const name = names.fresh(`${m.weight.name}_smoothed`);
          added.push(floatTensor(name, w, [m.k, m.n]));
          replaceInput(node, m.weight.name!, name);
        }
        continue;
      }
      quantizeMatMul(m, w, opts.weightBits, names, { added, dropped });
      report.quantized.push(m.name);
    }
  }

  g.node = (g.node ?? []).filter((n) => !dropped.has(n));
  g.initializer = [...(g.initializer ?? []), ...added];
  pruneInitializers(model);
  importDomain(model, MS_DOMAIN, 1);
  if (allScales.length > 0) {
    allScales.sort((a, b) => a - b);
    report.smoothScale = {
      max: allScales[allScales.length - 1]!,
      median: allScales[Math.floor(allScales.length / 2)]!,
    };
  }
  return report;
}

/** Drops initializers nothing reads any more (the float weights the int8 ones replaced). */
export function pruneInitializers(model: ModelProto): void {
  const g = model.graph!;
  const read = new Set<string>();
  for (const n of g.node ?? []) for (const i of n.input ?? []) read.add(i);
  for (const o of g.output ?? []) if (o.name) read.add(o.name);
  // Subgraphs (If/Loop bodies) read outer values by name too: keep anything a subgraph mentions.
  for (const n of g.node ?? []) {
    for (const a of n.attribute ?? []) {
      for (const sub of [a.g, ...(a.graphs ?? [])]) {
        if (!sub) continue;
        for (const sn of sub.node ?? []) for (const i of sn.input ?? []) read.add(i);
      }
    }
  }
  const gone = new Set((g.initializer ?? []).filter((t) => !(t.name && read.has(t.name))).map((t) => t.name));
  g.initializer = (g.initializer ?? []).filter((t) => !gone.has(t.name));
  // Old exports (IR < 4) also list initializers as graph inputs; a dropped one must leave both lists.
  g.input = (g.input ?? []).filter((v) => !gone.has(v.name));
}
