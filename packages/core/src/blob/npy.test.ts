import { describe, expect, it } from 'vitest';
import { encodeNpyFloat32, NPY_ALIGNMENT, npyHeader } from './npy';
import { readNpy } from './npy-read';

describe('npy writer', () => {
  it('writes a valid v1.0 header, 64-byte aligned, with the shape', () => {
    for (const [n, dim] of [
      [0, 768],
      [1, 1],
      [3, 384],
      [12345, 1024],
    ] as const) {
      const header = npyHeader([n, dim]);
      expect(header.length % NPY_ALIGNMENT).toBe(0);
      expect(header.subarray(0, 6).toString('latin1')).toBe('\x93NUMPY');
      expect([header[6], header[7]]).toEqual([1, 0]);
      expect(header.readUInt16LE(8)).toBe(header.length - 10);
      const dict = header.subarray(10).toString('latin1');
      expect(dict.endsWith('\n')).toBe(true);
      expect(dict.trimEnd()).toBe(`{'descr': '<f4', 'fortran_order': False, 'shape': (${n}, ${dim}), }`);
    }
    expect(npyHeader([5]).subarray(10).toString('latin1')).toContain("'shape': (5,), }");
  });

  it('round-trips the float data, row-major and little-endian', () => {
    const dim = 5;
    const rows = [
      new Float32Array([0, -0, 1.5, -2.25, 3.4028234663852886e38]),
      new Float32Array([1e-45, 0.1, Math.PI, -1e-7, 42]),
    ];
    const buf = encodeNpyFloat32(rows, dim);
    const parsed = readNpy(buf);
    expect(parsed.major).toBe(1);
    expect(parsed.dataOffset % 64).toBe(0);
    expect(parsed.fortranOrder).toBe(false);
    expect(parsed.shape).toEqual([2, dim]);
    expect(Array.from(parsed.data)).toEqual([...rows[0]!, ...rows[1]!]);
    expect(Object.is(parsed.data[1], -0)).toBe(true);
    expect(buf.length).toBe(parsed.dataOffset + 2 * dim * 4);
  });

  it('reads rows from subarray views at their offset', () => {
    const backing = new Float32Array([9, 9, 1, 2, 3, 9]);
    const parsed = readNpy(encodeNpyFloat32([backing.subarray(2, 5)], 3));
    expect(Array.from(parsed.data)).toEqual([1, 2, 3]);
  });

  it('refuses a row of the wrong length', () => {
    expect(() => encodeNpyFloat32([new Float32Array(3)], 4)).toThrow(/expected 4/);
  });
});
