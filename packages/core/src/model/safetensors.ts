import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { z } from 'zod';
import { EmbedpoolError } from '../errors';
import { bfloat16ToFloat32, float16ToFloat32 } from './half';
import { numel, type WeightMap } from './weights';

// The format's own reference implementation refuses headers above 100 MB; so do we, before allocating.
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const BYTES_PER_ELEMENT = { F32: 4, F16: 2, BF16: 2, F64: 8 } as const;
export type SafetensorsDtype = keyof typeof BYTES_PER_ELEMENT;

const entrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte range relative to the start of the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Absolute file offset of the data section (8 + header length). */
  dataStart: number;
  entries: SafetensorsEntry[];
  metadata: Record<string, string> | undefined;
}

function invalid(message: string, details?: Record<string, unknown>): EmbedpoolError {
  return new EmbedpoolError('MODEL_INVALID', `safetensors: ${message}`, details ? { details } : undefined);
}

/** Validates the header against the file size so a truncated or hostile file fails before any read. */
export function parseSafetensorsHeader(prefix: Uint8Array, fileSize: number): SafetensorsHeader {
  if (prefix.length < 8 || fileSize < 8) throw invalid('file shorter than its 8-byte length prefix');
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > fileSize) {
    throw invalid(`header length ${headerLen} does not fit a ${fileSize}-byte file`);
  }
  if (prefix.length < 8 + headerLen) throw invalid('header truncated');
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(prefix.subarray(8, 8 + headerLen)));
  } catch (err) {
    throw new EmbedpoolError('MODEL_INVALID', 'safetensors: header is not valid UTF-8 JSON', { cause: err });
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw invalid('header is not a JSON object');

  const dataStart = 8 + headerLen;
  const dataLen = fileSize - dataStart;
  const entries: SafetensorsEntry[] = [];
  let metadata: Record<string, string> | undefined;
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') {
      metadata = z.record(z.string(), z.string()).catch({}).parse(raw);
      continue;
    }
    const parsed = entrySchema.safeParse(raw);
    if (!parsed.success) throw invalid(`entry ${name} is malformed`, { name });
    const {
      dtype,
      shape,
      data_offsets: [begin, end],
    } = parsed.data;
    if (!Object.hasOwn(BYTES_PER_ELEMENT, dtype)) throw invalid(`${name} has unsupported dtype ${dtype}`);
    const size = BYTES_PER_ELEMENT[dtype as SafetensorsDtype];
    if (end < begin || end > dataLen || end - begin !== numel(shape) * size) {
      throw invalid(`${name} has data_offsets [${begin},${end}] inconsistent with its shape or the file`, {
        name,
      });
    }
    entries.push({ name, dtype: dtype as SafetensorsDtype, shape, begin, end });
  }
  return { dataStart, entries, metadata };
}

/** Widens one tensor's bytes to float32; `bytes` must be exactly the tensor's range. */
function toFloat32(entry: SafetensorsEntry, bytes: Uint8Array): Float32Array {
  const n = numel(entry.shape);
  const aligned = bytes.byteOffset % BYTES_PER_ELEMENT[entry.dtype] === 0;
  const src = aligned ? bytes : bytes.slice();
  switch (entry.dtype) {
    case 'F32':
      // Zero-copy when the view is aligned; the caller owns (and keeps alive) the backing buffer.
      return new Float32Array(src.buffer, src.byteOffset, n);
    case 'F16':
      return float16ToFloat32(new Uint16Array(src.buffer, src.byteOffset, n));
    case 'BF16':
      return bfloat16ToFloat32(new Uint16Array(src.buffer, src.byteOffset, n));
    case 'F64':
      return Float32Array.from(new Float64Array(src.buffer, src.byteOffset, n));
  }
}

/** Parses an in-memory file; float32 tensors are views into `bytes` where alignment allows. */
export function parseSafetensors(bytes: Uint8Array): WeightMap {
  const header = parseSafetensorsHeader(bytes, bytes.length);
  const out: WeightMap = new Map();
  for (const e of header.entries) {
    const range = bytes.subarray(header.dataStart + e.begin, header.dataStart + e.end);
    out.set(e.name, { shape: e.shape, data: toFloat32(e, range) });
  }
  return out;
}

/**
 * Reads a file tensor by tensor straight into each tensor's own buffer: no whole-file copy in memory,
 * and files over Node's 2 GiB readFileSync limit (ViT-g) still load.
 */
export function readSafetensors(path: string): WeightMap {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new EmbedpoolError('MODEL_NOT_FOUND', `cannot open weights ${path}`, { cause: err });
  }
  try {
    const fileSize = fstatSync(fd).size;
    const lenBuf = new Uint8Array(8);
    readFully(fd, lenBuf, 0);
    const headerLen = Number(new DataView(lenBuf.buffer).getBigUint64(0, true));
    if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > fileSize) {
      throw invalid(`header length ${headerLen} does not fit a ${fileSize}-byte file`);
    }
    const prefix = new Uint8Array(8 + headerLen);
    prefix.set(lenBuf);
    readFully(fd, prefix.subarray(8), 8);
    const header = parseSafetensorsHeader(prefix, fileSize);
    const out: WeightMap = new Map();
    for (const e of header.entries) {
      const position = header.dataStart + e.begin;
      if (e.dtype === 'F32') {
        const data = new Float32Array(numel(e.shape));
        readFully(fd, new Uint8Array(data.buffer), position);
        out.set(e.name, { shape: e.shape, data });
      } else {
        const raw = new Uint8Array(e.end - e.begin);
        readFully(fd, raw, position);
        out.set(e.name, { shape: e.shape, data: toFloat32(e, raw) });
      }
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

function readFully(fd: number, target: Uint8Array, position: number): void {
  let done = 0;
  while (done < target.length) {
    const n = readSync(fd, target, done, target.length - done, position + done);
    if (n === 0) throw invalid('file ended before the data its header describes');
    done += n;
  }
}
