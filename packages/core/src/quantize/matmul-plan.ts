import { dimsOf, type GraphIndex, type NodeProto, type TensorProto } from './onnx-io';

/** A MatMul by a constant weight: the only kind int8 makes faster. */
export interface WeightMatMul {
  node: NodeProto;
  name: string;
  /** The activation input (left operand). */
  input: string;
  weight: TensorProto;
  k: number;
  n: number;
  /** An Add of a constant [n] bias right after, which DynamicQuantizeMatMul can take over. */
  biasAdd?: { node: NodeProto; bias: TensorProto };
}

/** Where the per-channel smoothing scales can be folded: the affine end of a LayerNorm. */
export type SmoothSite =
  | { kind: 'layernorm'; node: NodeProto; gamma: TensorProto; beta: TensorProto | undefined }
  | { kind: 'mul-add'; mul: NodeProto; gamma: TensorProto; add: NodeProto; beta: TensorProto };

/** MatMuls that read the same activation; smoothed together, since they share the folded scale. */
export interface MatMulGroup {
  input: string;
  k: number;
  matmuls: WeightMatMul[];
  site: SmoothSite | undefined;
}

function otherInput(node: NodeProto, value: string): string | undefined {
  const ins = node.input ?? [];
  if (ins.length !== 2) return undefined;
  return ins[0] === value ? ins[1]! : ins[1] === value ? ins[0]! : undefined;
}

/** Every MatMul whose right operand is a 2-D float initializer, with its bias Add when there is one. */
export function findWeightMatMuls(index: GraphIndex, nodes: NodeProto[]): WeightMatMul[] {
  const out: WeightMatMul[] = [];
  for (const node of nodes) {
    if (node.opType !== 'MatMul' || (node.domain ?? '') !== '') continue;
    const [a, b] = node.input ?? [];
    if (!a || !b || index.initializers.has(a)) continue;
    const weight = index.floatInit(b);
    if (!weight) continue;
    const dims = dimsOf(weight);
    if (dims.length !== 2) continue;
    const [k, n] = dims as [number, number];
    const mm: WeightMatMul = { node, name: node.name || node.output![0]!, input: a, weight, k, n };
    const y = node.output![0]!;
    const readers = index.consumersOf(y);
    if (readers.length === 1 && !index.graphOutputs.has(y)) {
      const add = readers[0]!;
      const other = add.opType === 'Add' && (add.domain ?? '') === '' ? otherInput(add, y) : undefined;
      const bias = index.floatInit(other, n);
      if (bias && dimsOf(bias).length === 1) mm.biasAdd = { node: add, bias };
    }
    out.push(mm);
  }
  return out;
}

/**
 * The LayerNorm whose output feeds `input`, when every reader of that output is one of `matmuls`:
 * then dividing its gain and bias by s and multiplying the weights' rows by s changes nothing in
 * float32. Two layouts: the fused LayerNormalization op (opset 17: our builder, recent torch exports)
 * and the decomposed form older exports (opset < 17, Xenova's optimum exports) end in: Mul(gain), Add(bias).
 */
export function findSmoothSite(
  index: GraphIndex,
  input: string,
  k: number,
  matmuls: WeightMatMul[],
): SmoothSite | undefined {
  if (index.graphOutputs.has(input)) return undefined;
  const readers = index.consumersOf(input);
  if (readers.length !== matmuls.length || !readers.every((r) => matmuls.some((m) => m.node === r))) {
    return undefined;
  }
  const p = index.producer.get(input);
  if (!p || (p.domain ?? '') !== '') return undefined;
  if (p.opType === 'LayerNormalization') {
    const axis = p.attribute?.find((a) => a.name === 'axis');
    if (axis && Number(axis.i) !== -1) return undefined;
    const gamma = index.floatInit(p.input?.[1], k);
    if (!gamma) return undefined;
    const betaName = p.input?.[2];
    const beta = betaName ? index.floatInit(betaName, k) : undefined;
    if (betaName && !beta) return undefined;
    // Only the normalised output may be read: the optional mean / inv-std outputs would not be scaled.
    if ((p.output ?? []).slice(1).some((o) => o && index.consumersOf(o).length > 0)) return undefined;
    return { kind: 'layernorm', node: p, gamma, beta };
  }
  if (p.opType === 'Add') {
    for (const [x, b] of [
      [p.input?.[0], p.input?.[1]],
      [p.input?.[1], p.input?.[0]],
    ] as const) {
      const beta = index.floatInit(b, k);
      if (!beta || !x || index.graphOutputs.has(x)) continue;
      const mul = index.producer.get(x);
      if (mul?.opType !== 'Mul' || index.consumersOf(x).length !== 1) continue;
      const [m0, m1] = mul.input ?? [];
      const gamma = index.floatInit(m1, k) ?? index.floatInit(m0, k);
      if (gamma) return { kind: 'mul-add', mul, gamma, add: p, beta };
    }
  }
  return undefined;
}

export function groupMatMuls(index: GraphIndex, matmuls: WeightMatMul[]): MatMulGroup[] {
  const byInput = new Map<string, WeightMatMul[]>();
  for (const m of matmuls) byInput.set(m.input, [...(byInput.get(m.input) ?? []), m]);
  return [...byInput].map(([input, list]) => {
    const k = list[0]!.k;
    const sameK = list.every((m) => m.k === k);
    return { input, k, matmuls: list, site: sameK ? findSmoothSite(index, input, k, list) : undefined };
  });
}
