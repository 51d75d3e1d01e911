import { type FileHandle, open } from 'node:fs/promises';
import { EmbedpoolError } from '../errors';

export type ModelPrecision = 'float32' | 'float16' | 'int8';

export interface ModelPrecisionInfo {
  precision: ModelPrecision;
  /** Where it was read: the model's own embedpool metadata, else what the graph holds. */
  from: 'metadata' | 'graph';
  /** The model's metadata_props (for an int8 model: method, measured cosine, source id and sha256). */
  metadata: Record<string, string>;
}

// Ops that mean the model computes in 8-bit integers (ours and onnxruntime's quantize_dynamic/static).
const INT8_OPS = new Set([
  'DynamicQuantizeMatMul',
  'MatMulInteger',
  'MatMulIntegerToFloat',
  'DynamicQuantizeLinear',
  'QLinearMatMul',
  'QLinearConv',
  'QAttention',
  'QuantizeLinear',
  'MatMulNBits',
]);
const FLOAT = 1;
const FLOAT16 = 10;
const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

/**
 * Reads protobuf fields straight from the file through a small window, seeking over large fields: the
 * metadata and the node list of a 350 MB model are read without loading its weights.
 */
class FileReader {
  private buf = Buffer.alloc(1 << 16);
  private start = 0; // file offset of buf[0]
  private end = 0; // file offset after the last valid byte in buf
  pos = 0;

  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  private async fill(at: number, need: number): Promise<void> {
    if (need > this.buf.length) this.buf = Buffer.alloc(need);
    const { bytesRead } = await this.fh.read(this.buf, 0, this.buf.length, at);
    this.start = at;
    this.end = at + bytesRead;
  }

  async bytes(n: number): Promise<Buffer> {
    if (this.pos < this.start || this.pos + n > this.end) await this.fill(this.pos, n);
    if (this.pos + n > this.end) throw new EmbedpoolError('MODEL_INVALID', 'truncated ONNX file');
    const out = this.buf.subarray(this.pos - this.start, this.pos - this.start + n);
    this.pos += n;
    return out;
  }

  async varint(): Promise<number> {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const b = (await this.bytes(1))[0]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
    throw new EmbedpoolError('MODEL_INVALID', 'bad varint in ONNX file');
  }

  async skip(wire: number): Promise<void> {
    if (wire === WIRE_VARINT) await this.varint();
    else if (wire === WIRE_I64) this.pos += 8;
    else if (wire === WIRE_I32) this.pos += 4;
    else if (wire === WIRE_LEN) {
      const n = await this.varint();
      this.pos += n;
    } else throw new EmbedpoolError('MODEL_INVALID', `unsupported protobuf wire type ${wire}`);
  }

  // Note for callers: read a length before taking `pos` (`pos + await varint()` takes pos too early).
  /** Calls `field` for each field until `end`; it reads the field or returns false to have it skipped. */
  async fields(end: number, field: (num: number, wire: number) => Promise<boolean>): Promise<void> {
    while (this.pos < end) {
      const tag = await this.varint();
      const num = Math.floor(tag / 8);
      const wire = tag & 7;
      if (!(await field(num, wire))) await this.skip(wire);
    }
    this.pos = end;
  }

  async string(): Promise<string> {
    const n = await this.varint();
    return (await this.bytes(n)).toString('utf8');
  }
}

/**
 * The precision a model computes in: its `embedpool.precision` metadata when `model quantize` wrote one;
 * otherwise int8 when the graph holds quantized ops, float16 when most weight bytes are half floats,
 * else float32.
 */
export async function readModelPrecision(path: string): Promise<ModelPrecisionInfo> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new EmbedpoolError('MODEL_NOT_FOUND', `model file not found: ${path}`, { cause: err });
  }
  try {
    const r = new FileReader(fh, (await fh.stat()).size);
    const metadata: Record<string, string> = {};
    let int8 = false;
    const weightBytes = { [FLOAT]: 0, [FLOAT16]: 0 } as Record<number, number>;
    await r.fields(r.size, async (num, wire) => {
      if (num === 14 && wire === WIRE_LEN) {
        // metadata_props: StringStringEntryProto { key = 1; value = 2 }
        const endLen = await r.varint();
        const end = r.pos + endLen;
        let key = '';
        let value = '';
        await r.fields(end, async (n, w) => {
          if (w !== WIRE_LEN || (n !== 1 && n !== 2)) return false;
          if (n === 1) key = await r.string();
          else value = await r.string();
          return true;
        });
        metadata[key] = value;
        return true;
      }
      if (num === 7 && wire === WIRE_LEN) {
        const graphEndLen = await r.varint();
        const graphEnd = r.pos + graphEndLen;
        await r.fields(graphEnd, async (n, w) => {
          if (w !== WIRE_LEN) return false;
          if (n === 1) {
            // NodeProto { op_type = 4 }
            const endLen = await r.varint();
            const end = r.pos + endLen;
            await r.fields(end, async (f, fw) => {
              if (f !== 4 || fw !== WIRE_LEN) return false;
              if (INT8_OPS.has(await r.string())) int8 = true;
              return true;
            });
            return true;
          }
          if (n === 5) {
            // TensorProto { data_type = 2; raw_data = 9; float_data = 4 }: count each weight's bytes by type.
            const len = await r.varint();
            const end = r.pos + len;
            let type = 0;
            await r.fields(end, async (f, fw) => {
              if (f === 2 && fw === WIRE_VARINT) {
                type = await r.varint();
                return true;
              }
              return false;
            });
            weightBytes[type] = (weightBytes[type] ?? 0) + len;
            return true;
          }
          return false;
        });
        return true;
      }
      return false;
    });
    const declared = metadata['embedpool.precision'];
    if (declared === 'int8' || declared === 'float16' || declared === 'float32') {
      return { precision: declared, from: 'metadata', metadata };
    }
    const precision: ModelPrecision = int8
      ? 'int8'
      : (weightBytes[FLOAT16] ?? 0) > (weightBytes[FLOAT] ?? 0)
        ? 'float16'
        : 'float32';
    return { precision, from: 'graph', metadata };
  } finally {
    await fh.close();
  }
}
