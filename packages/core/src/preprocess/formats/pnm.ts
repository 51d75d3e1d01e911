import { checkDimensions, decodeFailed, type Raster, type RasterHeader, truncated } from './raster';

/**
 * Netpbm PBM/PGM/PPM (P1-P6), plain and raw, maxval 1-65535, read as Pillow's PpmImagePlugin does:
 * samples scaled as round(v / maxval * 255) (Python's round, ties to even), PBM 1 = black. One deliberate
 * difference: Pillow opens a PGM with maxval > 255 as 32-bit integers, whose RGB conversion clips at 255;
 * here it is scaled to 8 bits like every other 16-bit input (v/257 for maxval 65535), as for 16-bit PNG.
 * No npm package reads all six variants with bounded memory, so this is written here.
 */

const WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d]);

export interface PnmHeader extends RasterHeader {
  kind: number; // 1-6
  maxval: number;
  /** Index of the first sample byte (raw) or character (plain). */
  dataOffset: number;
}

export function isPnm(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 3 &&
    bytes[0] === 0x50 &&
    bytes[1]! >= 0x31 &&
    bytes[1]! <= 0x36 &&
    WHITESPACE.has(bytes[2]!)
  );
}

/** Pillow `_read_token`: skips whitespace and `#` comments; tokens of at most 10 characters. */
function readToken(bytes: Uint8Array, pos: number): [string, number] {
  let token = '';
  let p = pos;
  while (token.length <= 10) {
    if (p >= bytes.length) break;
    const c = bytes[p++]!;
    if (WHITESPACE.has(c)) {
      if (!token) continue;
      break;
    }
    if (c === 0x23) {
      while (p < bytes.length && bytes[p] !== 0x0a && bytes[p] !== 0x0d) p++;
      p++;
      continue;
    }
    token += String.fromCharCode(c);
  }
  if (!token) throw truncated('ppm');
  if (token.length > 10 || !/^\d+$/.test(token)) throw decodeFailed('ppm', 'malformed header');
  return [token, p];
}

export function parsePnm(bytes: Uint8Array): PnmHeader {
  if (!isPnm(bytes)) throw decodeFailed('ppm', 'not a PNM file');
  const kind = bytes[1]! - 0x30;
  let p = 3;
  let t: string;
  [t, p] = readToken(bytes, p);
  const width = Number(t);
  [t, p] = readToken(bytes, p);
  const height = Number(t);
  let maxval = 1;
  if (kind !== 1 && kind !== 4) {
    [t, p] = readToken(bytes, p);
    maxval = Number(t);
    if (!(maxval > 0 && maxval < 65536)) throw decodeFailed('ppm', `maxval ${maxval} out of range`);
  }
  checkDimensions('ppm', { width, height }, Number.MAX_SAFE_INTEGER);
  return { kind, width, height, maxval, dataOffset: p };
}

/** round(v / maxval * 255) with Python's float arithmetic and ties-to-even rounding. */
function scaleTable(maxval: number): Uint8Array {
  const table = new Uint8Array(maxval + 1);
  for (let v = 0; v <= maxval; v++) {
    const x = (v / maxval) * 255;
    let r = Math.round(x);
    if (r - x === 0.5 && r % 2 !== 0) r -= 1;
    table[v] = r;
  }
  return table;
}

export function decodePnm(bytes: Uint8Array, maxInputPixels: number): Raster {
  const h = parsePnm(bytes);
  checkDimensions('ppm', h, maxInputPixels);
  const { width, height, kind } = h;
  const channels = kind === 3 || kind === 6 ? 3 : 1;
  const count = width * height * channels;
  const out = new Uint8Array(count);
  if (kind === 4) {
    const stride = Math.ceil(width / 8);
    if (h.dataOffset + stride * height > bytes.length) throw truncated('ppm');
    for (let y = 0; y < height; y++) {
      const s = h.dataOffset + y * stride;
      for (let x = 0; x < width; x++)
        out[y * width + x] = (bytes[s + (x >> 3)]! >> (7 - (x & 7))) & 1 ? 0 : 255;
    }
    return { width, height, channels: 1, data: out };
  }
  if (kind === 1) {
    let n = 0;
    for (let p = h.dataOffset; p < bytes.length && n < count; p++) {
      const c = bytes[p]!;
      if (c === 0x23) {
        while (p < bytes.length && bytes[p] !== 0x0a && bytes[p] !== 0x0d) p++;
      } else if (c === 0x30 || c === 0x31) {
        out[n++] = c === 0x31 ? 0 : 255;
      } else if (!WHITESPACE.has(c)) {
        throw decodeFailed('ppm', 'invalid character in PBM data');
      }
    }
    if (n < count) throw truncated('ppm');
    return { width, height, channels: 1, data: out };
  }
  const table = scaleTable(h.maxval);
  if (kind === 5 || kind === 6) {
    const wide = h.maxval > 255;
    const need = count * (wide ? 2 : 1);
    if (h.dataOffset + need > bytes.length) throw truncated('ppm');
    const s = h.dataOffset;
    for (let i = 0; i < count; i++) {
      const v = wide ? (bytes[s + 2 * i]! << 8) | bytes[s + 2 * i + 1]! : bytes[s + i]!;
      // Pillow clips samples above maxval to white.
      out[i] = v > h.maxval ? 255 : table[v]!;
    }
    return { width, height, channels: channels as 1 | 3, data: out };
  }
  // Plain P2/P3: decimal samples separated by whitespace, comments allowed.
  let n = 0;
  let p = h.dataOffset;
  while (n < count && p < bytes.length) {
    const c = bytes[p]!;
    if (c === 0x23) {
      while (p < bytes.length && bytes[p] !== 0x0a && bytes[p] !== 0x0d) p++;
      continue;
    }
    if (WHITESPACE.has(c)) {
      p++;
      continue;
    }
    let v = 0;
    let digits = 0;
    while (p < bytes.length && bytes[p]! >= 0x30 && bytes[p]! <= 0x39) {
      v = v * 10 + bytes[p]! - 0x30;
      p++;
      if (++digits > 10) throw decodeFailed('ppm', 'sample token too long');
    }
    if (!digits || (p < bytes.length && !WHITESPACE.has(bytes[p]!) && bytes[p] !== 0x23)) {
      throw decodeFailed('ppm', 'invalid character in PNM data');
    }
    if (v > h.maxval) throw decodeFailed('ppm', `sample ${v} above maxval ${h.maxval}`);
    out[n++] = table[v]!;
  }
  if (n < count) throw truncated('ppm');
  return { width, height, channels: channels as 1 | 3, data: out };
}
