/**
 * NumPy `.npy` format, version 1.0, written by hand for float32 matrices:
 *
 *   magic `\x93NUMPY`, version bytes 1 0, header length (uint16 LE), then the header: a Python dict literal
 *   `{'descr': '<f4', 'fortran_order': False, 'shape': (n, dim), }` padded with spaces and ended by `\n` so
 *   the data starts at a multiple of 64 bytes; then n*dim little-endian float32s, row-major.
 *
 * `numpy.load(path)` reads it as an (n, dim) float32 array.
 */
import { endianness } from 'node:os';

export const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
export const NPY_ALIGNMENT = 64;
const PREAMBLE = NPY_MAGIC.length + 2 + 2; // magic, version, header length

function shapeLiteral(shape: readonly number[]): string {
  // Python tuple syntax: a one-element tuple needs its trailing comma.
  return shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
}

/** The NPY v1.0 preamble and header for a C-order array of `descr` with `shape`; its length is 64-aligned. */
export function npyHeader(shape: readonly number[], descr = '<f4'): Buffer {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`invalid npy dimension ${d}`);
  }
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeLiteral(shape)}, }`;
  const unpadded = PREAMBLE + dict.length + 1; // + the closing newline
  const total = Math.ceil(unpadded / NPY_ALIGNMENT) * NPY_ALIGNMENT;
  const headerLen = total - PREAMBLE;
  if (headerLen > 0xffff) throw new RangeError('npy header too long for format 1.0');
  const out = Buffer.alloc(total, 0x20);
  NPY_MAGIC.copy(out, 0);
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(headerLen, 8);
  out.write(dict, PREAMBLE, 'latin1');
  out[total - 1] = 0x0a;
  return out;
}

/** An (rows.length, dim) float32 `.npy` file; every row must have `dim` values. */
export function encodeNpyFloat32(rows: readonly Float32Array[], dim: number): Buffer {
  if (!Number.isSafeInteger(dim) || dim <= 0) throw new RangeError(`invalid dim ${dim}`);
  const header = npyHeader([rows.length, dim]);
  const out = Buffer.alloc(header.length + rows.length * dim * 4);
  header.copy(out, 0);
  const littleEndian = endianness() === 'LE';
  let offset = header.length;
  for (const [i, row] of rows.entries()) {
    if (row.length !== dim) throw new RangeError(`row ${i} has ${row.length} values, expected ${dim}`);
    if (littleEndian) {
      out.set(new Uint8Array(row.buffer, row.byteOffset, row.byteLength), offset);
    } else {
      for (let j = 0; j < dim; j++) out.writeFloatLE(row[j]!, offset + j * 4);
    }
    offset += dim * 4;
  }
  return out;
}
