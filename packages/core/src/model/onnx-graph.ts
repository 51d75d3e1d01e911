import onnxProto, { type onnx as proto } from 'onnx-proto';
import { EmbedpoolError } from '../errors';
import { float32ToFloat16 } from './half';

// onnx-proto is a CommonJS protobufjs bundle; Node's ESM loader exposes it only as a default export.
const { onnx } = onnxProto;

export const DataType = {
  FLOAT: onnx.TensorProto.DataType.FLOAT,
  FLOAT16: onnx.TensorProto.DataType.FLOAT16,
  INT64: onnx.TensorProto.DataType.INT64,
} as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

const AttrType = onnx.AttributeProto.AttributeType;

/** Attributes carry their type explicitly: ORT rejects an attribute whose `type` is unset. */
export const attr = {
  int: (name: string, i: number): proto.IAttributeProto => ({ name, type: AttrType.INT, i }),
  float: (name: string, f: number): proto.IAttributeProto => ({ name, type: AttrType.FLOAT, f }),
  ints: (name: string, ints: number[]): proto.IAttributeProto => ({ name, type: AttrType.INTS, ints }),
};

/** A dimension is a fixed size or a symbolic name (dynamic). */
export type Dim = number | string;

function valueInfo(name: string, elemType: DataType, dims: Dim[]): proto.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/** The bytes of exactly this view: `new Uint8Array(view.buffer)` would drag in the whole backing buffer. */
function ownBytes(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/**
 * Accumulates nodes and initializers and encodes one ModelProto (IR 8). Names are generated from a
 * scope prefix so a graph reads like the module tree it came from when opened in Netron.
 */
export class GraphBuilder {
  private readonly nodes: proto.INodeProto[] = [];
  private readonly initializers: proto.ITensorProto[] = [];
  private readonly inputs: proto.IValueInfoProto[] = [];
  private readonly outputs: proto.IValueInfoProto[] = [];
  private readonly used = new Set<string>();
  private readonly constCache = new Map<string, string>();

  /** Returns `base` if unused, else `base_2`, `base_3`, ...: ONNX requires unique value names. */
  unique(base: string): string {
    let name = base;
    for (let i = 2; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
  }

  input(name: string, elemType: DataType, dims: Dim[]): string {
    this.used.add(name);
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: DataType, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** Float32 or float16 (raw half bits) weights, stored as raw little-endian bytes. */
  weight(name: string, data: Float32Array | Uint16Array, dims: number[]): string {
    const dataType = data instanceof Float32Array ? DataType.FLOAT : DataType.FLOAT16;
    const unique = this.unique(name);
    this.initializers.push({ name: unique, dims, dataType, rawData: ownBytes(data) });
    return unique;
  }

  /** Small int64 constants (shapes, axes, indices), shared across the graph by value. */
  int64(values: number[], dims: number[] = [values.length]): string {
    const key = `${dims.join('x')}:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.unique(`const_i64_${values.join('_').replaceAll('-', 'm')}`);
    const data = BigInt64Array.from(values, (v) => BigInt(v));
    this.initializers.push({ name, dims, dataType: DataType.INT64, rawData: ownBytes(data) });
    this.constCache.set(key, name);
    return name;
  }

  /** A float scalar constant in the given precision (rank 0, so it broadcasts against anything). */
  scalar(value: number, dataType: DataType): string {
    const key = `${dataType}:${value}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.unique(`const_${dataType === DataType.FLOAT16 ? 'f16' : 'f32'}_${value}`);
    const data =
      dataType === DataType.FLOAT16 ? float32ToFloat16(Float32Array.of(value)) : Float32Array.of(value);
    this.initializers.push({ name, dims: [], dataType, rawData: ownBytes(data) });
    this.constCache.set(key, name);
    return name;
  }

  /** Adds a node with one output named after `outName` (made unique) and returns that name. */
  node(opType: string, inputs: string[], outName: string, attributes: proto.IAttributeProto[] = []): string {
    const output = this.unique(outName);
    this.nodes.push({ opType, input: inputs, output: [output], name: output, attribute: attributes });
    return output;
  }

  /** Adds a node with several outputs (e.g. Split). */
  nodeMulti(
    opType: string,
    inputs: string[],
    outNames: string[],
    attributes: proto.IAttributeProto[] = [],
  ): string[] {
    const outputs = outNames.map((n) => this.unique(n));
    this.nodes.push({ opType, input: inputs, output: outputs, name: outputs[0], attribute: attributes });
    return outputs;
  }

  /** Adds a node whose single output gets exactly `name` (a graph output), not a uniquified one. */
  namedNode(
    opType: string,
    inputs: string[],
    name: string,
    attributes: proto.IAttributeProto[] = [],
  ): string {
    if (this.used.has(name)) throw new EmbedpoolError('INTERNAL', `graph value name ${name} already used`);
    this.used.add(name);
    this.nodes.push({ opType, input: inputs, output: [name], name, attribute: attributes });
    return name;
  }

  encode(opts: { graphName: string; opset: number; producer: string; docString?: string }): Uint8Array {
    const model: proto.IModelProto = {
      irVersion: 8,
      producerName: opts.producer,
      opsetImport: [{ domain: '', version: opts.opset }],
      docString: opts.docString ?? '',
      graph: {
        name: opts.graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    };
    return onnx.ModelProto.encode(model).finish();
  }
}
