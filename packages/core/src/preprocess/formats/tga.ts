import { checkDimensions, decodeFailed, expand5, type Raster, type RasterHeader, truncated } from './raster';

/**
 * Truevision TGA, uncompressed and RLE, as Pillow's TgaImagePlugin reads it: colour-mapped 8-bit (palettes
 * of 15/16, 24 or 32 bits), grey 1/8-bit and grey+alpha 16-bit, true colour 16 (5-5-5), 24 and 32-bit;
 * bottom-up or top-down, mirrored or not. Alpha is dropped. The npm TGA readers (`tga`, `tga-js`) are
 * unmaintained browser-era code without RLE bounds checks, so this is written here.
 *
 * TGA has no magic number: `isTga` accepts only headers whose every field is one Pillow accepts and whose
 * image type is known, and it is tried after every format that has a signature.
 */

export interface TgaHeader extends RasterHeader {
  idLength: number;
  colorMapType: number;
  imageType: number;
  mapStart: number;
  mapLength: number;
  mapDepth: number;
  depth: number;
  topDown: boolean;
  mirrored: boolean;
  /** Index of the first pixel byte. */
  dataOffset: number;
  /** RGB triplets, 256 entries, for colour-mapped images. */
  palette: Uint8Array | undefined;
}

const u16 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);

const KNOWN = new Set(['1:8', '3:1', '3:8', '3:16', '2:16', '2:24', '2:32']);

export function isTga(bytes: Uint8Array): boolean {
  if (bytes.length < 18) return false;
  const colorMapType = bytes[1]!;
  const imageType = bytes[2]!;
  const depth = bytes[16]!;
  const flags = bytes[17]!;
  if (colorMapType > 1) return false;
  if (![1, 2, 3, 9, 10, 11].includes(imageType)) return false;
  if (!KNOWN.has(`${imageType & 7}:${depth}`)) return false;
  // A colour-mapped image needs a map; a map's entries must be a size Pillow reads.
  if ((imageType & 7) === 1 && (colorMapType !== 1 || u16(bytes, 5) === 0)) return false;
  if (colorMapType === 1 && ![15, 16, 24, 32].includes(bytes[7]!)) return false;
  if (flags & 0xc0) return false; // interleaving, never written in practice
  return u16(bytes, 12) > 0 && u16(bytes, 14) > 0;
}

export function parseTga(bytes: Uint8Array): TgaHeader {
  if (!isTga(bytes)) throw decodeFailed('tga', 'not a TGA file');
  const idLength = bytes[0]!;
  const colorMapType = bytes[1]!;
  const imageType = bytes[2]!;
  const mapStart = u16(bytes, 3);
  const mapLength = u16(bytes, 5);
  const mapDepth = bytes[7]!;
  const width = u16(bytes, 12);
  const height = u16(bytes, 14);
  const depth = bytes[16]!;
  const flags = bytes[17]!;
  let p = 18 + idLength;
  let palette: Uint8Array | undefined;
  if (colorMapType === 1) {
    const entry = Math.ceil(mapDepth / 8);
    if (p + entry * mapLength > bytes.length) throw truncated('tga');
    palette = new Uint8Array(256 * 3);
    for (let i = 0; i < mapLength && mapStart + i < 256; i++) {
      const s = p + i * entry;
      const o = (mapStart + i) * 3;
      if (entry === 2) {
        const v = u16(bytes, s);
        palette[o] = expand5((v >> 10) & 31);
        palette[o + 1] = expand5((v >> 5) & 31);
        palette[o + 2] = expand5(v & 31);
      } else {
        palette[o] = bytes[s + 2]!;
        palette[o + 1] = bytes[s + 1]!;
        palette[o + 2] = bytes[s]!;
      }
    }
    p += entry * mapLength;
  }
  checkDimensions('tga', { width, height }, Number.MAX_SAFE_INTEGER);
  return {
    width,
    height,
    idLength,
    colorMapType,
    imageType,
    mapStart,
    mapLength,
    mapDepth,
    depth,
    topDown: (flags & 0x20) !== 0,
    mirrored: (flags & 0x10) !== 0,
    dataOffset: p,
    palette,
  };
}

export function decodeTga(bytes: Uint8Array, maxInputPixels: number): Raster {
  const h = parseTga(bytes);
  checkDimensions('tga', h, maxInputPixels);
  const { width, height, depth } = h;
  const type = h.imageType & 7;
  // Pillow reads 1-bit grey as packed rows; everything else is whole bytes per pixel.
  const packed = depth === 1;
  const bpp = Math.ceil(depth / 8);
  const rowBytes = packed ? Math.ceil(width / 8) : width * bpp;
  const stored =
    h.imageType & 8
      ? unpackRle(bytes, h.dataOffset, bpp, rowBytes * height)
      : rawData(bytes, h, rowBytes * height);
  const grey = type === 3;
  const channels = grey ? 1 : 3;
  const out = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    const s = (h.topDown ? y : height - 1 - y) * rowBytes;
    for (let x = 0; x < width; x++) {
      const o = (y * width + (h.mirrored ? width - 1 - x : x)) * channels;
      if (packed) {
        out[o] = (stored[s + (x >> 3)]! >> (7 - (x & 7))) & 1 ? 255 : 0;
        continue;
      }
      const p = s + x * bpp;
      if (grey) {
        out[o] = stored[p]!; // 16-bit grey is grey + alpha: the first byte is the grey
      } else if (type === 1) {
        const i = stored[p]! * 3;
        out[o] = h.palette![i]!;
        out[o + 1] = h.palette![i + 1]!;
        out[o + 2] = h.palette![i + 2]!;
      } else if (depth === 16) {
        const v = stored[p]! | (stored[p + 1]! << 8);
        out[o] = expand5((v >> 10) & 31);
        out[o + 1] = expand5((v >> 5) & 31);
        out[o + 2] = expand5(v & 31);
      } else {
        out[o] = stored[p + 2]!;
        out[o + 1] = stored[p + 1]!;
        out[o + 2] = stored[p]!;
      }
    }
  }
  return { width, height, channels, data: out };
}

function rawData(bytes: Uint8Array, h: TgaHeader, size: number): Uint8Array {
  if (h.dataOffset + size > bytes.length) throw truncated('tga');
  return bytes.subarray(h.dataOffset, h.dataOffset + size);
}

/** Pillow TgaRleDecode: packets of 1 + (n & 127) pixels, repeated (n & 128) or literal; rows may be crossed. */
function unpackRle(bytes: Uint8Array, start: number, bpp: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let n = 0;
  let p = start;
  while (n < size) {
    if (p >= bytes.length) throw truncated('tga');
    const header = bytes[p++]!;
    const count = ((header & 127) + 1) * bpp;
    if (header & 128) {
      if (p + bpp > bytes.length) throw truncated('tga');
      for (let i = 0; i < count && n < size; i++) out[n++] = bytes[p + (i % bpp)]!;
      p += bpp;
    } else {
      if (p + count > bytes.length) throw truncated('tga');
      const take = Math.min(count, size - n);
      out.set(bytes.subarray(p, p + take), n);
      n += take;
      p += count;
    }
  }
  return out;
}
