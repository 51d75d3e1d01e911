import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PARITY_WEIGHTS } from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbedpoolError } from '../errors';
import { bfloat16ToFloat32, float16ToFloat32, float32ToFloat16 } from './half';
import { parseSafetensors, readSafetensors } from './safetensors';

interface RawTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** A minimal safetensors writer: 8-byte LE header length, JSON header (space-padded to 8), data. */
function encodeSafetensors(
  tensors: Record<string, RawTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += ' ';
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(new TextEncoder().encode(json), 8);
  let at = 8 + json.length;
  for (const t of Object.values(tensors)) {
    out.set(t.bytes, at);
    at += t.bytes.length;
  }
  return out;
}

const bytesOf = (v: ArrayBufferView) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof EmbedpoolError ? err.code : `not an EmbedpoolError: ${String(err)}`;
  }
  return undefined;
}

describe('half-float conversion', () => {
  it('converts known float16 and bfloat16 bit patterns', () => {
    const f16 = Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001, 0x0000, 0x8000, 0x7c00, 0x3555);
    expect([...float16ToFloat32(f16)]).toEqual([
      1,
      -2,
      65504,
      2 ** -24,
      0,
      -0,
      Infinity,
      Math.fround(0.333251953125),
    ]);
    expect(Number.isNaN(float16ToFloat32(Uint16Array.of(0x7e00))[0])).toBe(true);
    const bf16 = Uint16Array.of(0x3f80, 0xc040, 0x3e80);
    expect([...bfloat16ToFloat32(bf16)]).toEqual([1, -3, 0.25]);
  });

  it('round-trips every finite half exactly and rounds to nearest even', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = float32ToFloat16(float16ToFloat32(all));
    for (let h = 0; h < 65536; h++) {
      const nan = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (!nan && back[h] !== h)
        throw new Error(`half 0x${h.toString(16)} came back as 0x${back[h]!.toString(16)}`);
    }
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1).
    // 65520 is halfway between 65504 and 65536 (not representable): it rounds to Infinity.
    // 2^-25 is halfway between 0 and the smallest subnormal: ties to 0; just above goes to 2^-24.
    const cases = Float32Array.of(
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      65520,
      65519,
      2 ** -25,
      2 ** -25 * 1.0001,
      0.1,
    );
    expect([...float32ToFloat16(cases)]).toEqual([0x3c00, 0x3c02, 0x7c00, 0x7bff, 0x0000, 0x0001, 0x2e66]);
  });
});

describe('safetensors reader', () => {
  let dir: string;
  const values = Float32Array.of(1, -2.5, 0.15625, 1024, -0.0009765625, 3);

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'safetensors-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const file = () =>
    encodeSafetensors(
      {
        // An odd-sized first tensor leaves the next ones misaligned: the reader must cope.
        odd: { dtype: 'F16', shape: [1], bytes: bytesOf(float32ToFloat16(Float32Array.of(0.5))) },
        f32: { dtype: 'F32', shape: [2, 3], bytes: bytesOf(values) },
        f16: { dtype: 'F16', shape: [3, 2], bytes: bytesOf(float32ToFloat16(values)) },
        // bfloat16 = upper 16 bits; these values have zero low bits, so they are exact.
        bf16: {
          dtype: 'BF16',
          shape: [6],
          bytes: bytesOf(Uint16Array.from(new Uint32Array(values.buffer.slice(0)), (u) => u >>> 16)),
        },
        f64: { dtype: 'F64', shape: [6], bytes: bytesOf(Float64Array.from(values)) },
        empty: { dtype: 'F32', shape: [0, 4], bytes: new Uint8Array(0) },
      },
      { format: 'pt' },
    );

  it('reads float32, float16, bfloat16 and float64 tensors to float32, from memory and from disk', () => {
    const bytes = file();
    const path = join(dir, 'mixed.safetensors');
    writeFileSync(path, bytes);
    for (const map of [parseSafetensors(bytes), readSafetensors(path)]) {
      expect([...map.keys()].sort()).toEqual(['bf16', 'empty', 'f16', 'f32', 'f64', 'odd']);
      expect(map.get('f32')!.shape).toEqual([2, 3]);
      expect(map.get('f16')!.shape).toEqual([3, 2]);
      for (const name of ['f32', 'f16', 'bf16', 'f64']) expect([...map.get(name)!.data]).toEqual([...values]);
      expect(map.get('odd')!.data[0]).toBe(0.5);
      expect(map.get('empty')!.data.length).toBe(0);
    }
  });

  it('reads the fixture checkpoint with Dinov2Model names', () => {
    const map = readSafetensors(PARITY_WEIGHTS);
    expect(map.get('embeddings.position_embeddings')!.shape).toEqual([1, 1370, 192]);
    expect(map.get('encoder.layer.2.attention.attention.query.weight')!.shape).toEqual([192, 192]);
    expect(map.has('layernorm.bias')).toBe(true);
  });

  it('rejects corrupt files with MODEL_INVALID', () => {
    const good = file();
    const corrupt: Record<string, Uint8Array> = {};
    corrupt.tooShort = good.slice(0, 5);
    corrupt.hugeLength = good.slice();
    new DataView(corrupt.hugeLength.buffer).setBigUint64(0, 1n << 40n, true);
    corrupt.notJson = good.slice();
    corrupt.notJson[8] = 0x41; // 'A' instead of '{'
    corrupt.truncatedData = good.slice(0, good.length - 3);
    corrupt.badDtype = encodeSafetensors({ x: { dtype: 'I8', shape: [2], bytes: new Uint8Array(2) } });
    corrupt.wrongSize = encodeSafetensors({ x: { dtype: 'F32', shape: [3], bytes: new Uint8Array(8) } });
    corrupt.notObject = encodeSafetensors({});
    corrupt.notObject.set(new TextEncoder().encode('[]      '), 8);
    for (const [name, bytes] of Object.entries(corrupt)) {
      expect(
        codeOf(() => parseSafetensors(bytes)),
        name,
      ).toBe('MODEL_INVALID');
      const path = join(dir, `${name}.safetensors`);
      writeFileSync(path, bytes);
      expect(
        codeOf(() => readSafetensors(path)),
        `${name} (file)`,
      ).toBe('MODEL_INVALID');
    }
  });

  it('reports a missing file as MODEL_NOT_FOUND', () => {
    expect(codeOf(() => readSafetensors(join(dir, 'nope.safetensors')))).toBe('MODEL_NOT_FOUND');
  });
});
