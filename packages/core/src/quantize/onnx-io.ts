import { readFile } from 'node:fs/promises';
import onnxProto, { type onnx as proto } from 'onnx-proto';
import { EmbedpoolError } from '../errors';

// onnx-proto is a CommonJS protobufjs bundle; Node's ESM loader exposes it only as a default export.
const { onnx } = onnxProto;

export type ModelProto = proto.ModelProto;
export type NodeProto = proto.INodeProto;
export type TensorProto = proto.ITensorProto;

export const TensorType = {
  FLOAT: onnx.TensorProto.DataType.FLOAT,
  FLOAT16: onnx.TensorProto.DataType.FLOAT16,
  INT8: onnx.TensorProto.DataType.INT8,
  UINT8: onnx.TensorProto.DataType.UINT8,
} as const;

/** The contrib-op domain that holds DynamicQuantizeMatMul. */
export const MS_DOMAIN = 'com.microsoft';

export function decodeModel(bytes: Uint8Array): ModelProto {
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new EmbedpoolError('MODEL_INVALID', `not an ONNX model: ${(err as Error).message}`, { cause: err });
  }
}

export async function readModel(path: string): Promise<{ model: ModelProto; bytes: Uint8Array }> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new EmbedpoolError('MODEL_NOT_FOUND', `model file not found: ${path}`, { cause: err });
  }
  return { model: decodeModel(bytes), bytes };
}

export function encodeModel(model: proto.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** A deep-enough copy to rewrite nodes, initializers, outputs and metadata without touching `model`. */
export function cloneModel(model: ModelProto): ModelProto {
  // Re-decoding the encoding is the one copy protobufjs guarantees; raw weight bytes stay views.
  return onnx.ModelProto.decode(encodeModel(model));
}

/** The float32 values of an initializer (raw little-endian bytes or the repeated float field). */
export function floatData(t: TensorProto): Float32Array {
  if (t.dataType !== TensorType.FLOAT) {
    throw new EmbedpoolError('MODEL_INVALID', `initializer ${t.name} is not float32 (type ${t.dataType})`);
  }
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    throw new EmbedpoolError('MODEL_INVALID', `initializer ${t.name} keeps its data in an external file`);
  }
  if (t.rawData && t.rawData.length > 0) {
    // A copy: the view may sit at an offset that is not a multiple of 4 inside the file buffer.
    const copy = new Uint8Array(t.rawData.length);
    copy.set(t.rawData);
    return new Float32Array(copy.buffer);
  }
  return Float32Array.from(t.floatData ?? []);
}

export function dimsOf(t: TensorProto): number[] {
  return (t.dims ?? []).map((d) => Number(d));
}

function ownBytes(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

export function floatTensor(name: string, data: Float32Array, dims: number[]): TensorProto {
  return { name, dims, dataType: TensorType.FLOAT, rawData: ownBytes(data) };
}

export function int8Tensor(name: string, data: Int8Array, dims: number[]): TensorProto {
  return { name, dims, dataType: TensorType.INT8, rawData: ownBytes(data) };
}

export function getMetadata(model: proto.IModelProto): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of model.metadataProps ?? []) if (p.key) out[p.key] = p.value ?? '';
  return out;
}

export function setMetadata(model: proto.IModelProto, entries: Record<string, string>): void {
  const kept = (model.metadataProps ?? []).filter((p) => !(p.key && Object.hasOwn(entries, p.key)));
  model.metadataProps = [...kept, ...Object.entries(entries).map(([key, value]) => ({ key, value }))];
}

/** Makes sure the model imports `domain` (contrib ops need their own opset entry). */
export function importDomain(model: proto.IModelProto, domain: string, version: number): void {
  const list = model.opsetImport ?? [];
  if (!list.some((o) => (o.domain ?? '') === domain)) list.push({ domain, version });
  model.opsetImport = list;
}

/** Who makes each value and who reads it: the graph's wiring, for pattern matching. */
export class GraphIndex {
  readonly producer = new Map<string, NodeProto>();
  readonly consumers = new Map<string, NodeProto[]>();
  readonly initializers = new Map<string, TensorProto>();
  readonly graphOutputs: Set<string>;

  constructor(model: ModelProto) {
    const g = model.graph;
    if (!g) throw new EmbedpoolError('MODEL_INVALID', 'model has no graph');
    for (const t of g.initializer ?? []) if (t.name) this.initializers.set(t.name, t);
    for (const n of g.node ?? []) {
      for (const o of n.output ?? []) this.producer.set(o, n);
      for (const i of n.input ?? []) {
        if (!i) continue;
        const list = this.consumers.get(i);
        if (list) {
          if (!list.includes(n)) list.push(n);
        } else this.consumers.set(i, [n]);
      }
    }
    this.graphOutputs = new Set((g.output ?? []).map((o) => o.name ?? ''));
  }

  consumersOf(value: string): NodeProto[] {
    return this.consumers.get(value) ?? [];
  }

  /** A float initializer of exactly `numel` values, by name; undefined when `name` is anything else. */
  floatInit(name: string | undefined | null, numel?: number): TensorProto | undefined {
    if (!name) return undefined;
    const t = this.initializers.get(name);
    if (!t || t.dataType !== TensorType.FLOAT) return undefined;
    if (numel !== undefined && dimsOf(t).reduce((a, b) => a * b, 1) !== numel) return undefined;
    return t;
  }
}
