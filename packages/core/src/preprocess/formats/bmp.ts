import {
  checkDimensions,
  decodeFailed,
  expand5,
  expand6,
  type Raster,
  type RasterHeader,
  truncated,
} from './raster';

/**
 * Windows BMP and the DIBs inside ICO/CUR files, read the way Pillow's BmpImagePlugin reads them (the
 * reference decoder of the Azure endpoint): OS/2 v1 and Windows v3-v5 headers; 1, 4 and 8-bit palettes,
 * RLE4 and RLE8, 16-bit 5-5-5 and 5-6-5, 24-bit, 32-bit with the bitfield layouts Pillow accepts; bottom-up
 * and top-down rows. Alpha is dropped (Pillow's `convert("RGB")`), so 32-bit files give their colour bytes.
 *
 * Written here rather than taken from npm: `decode-bmp` has no RLE, 16-bit or bitfields, and `bmp-ts`
 * allocates from the header unchecked and writes wrong pixels for 1-bit files in its RGBA mode.
 */

const RAW = 0;
const RLE8 = 1;
const RLE4 = 2;
const BITFIELDS = 3;

type PixelLayout = 'palette' | 'bgr15' | 'bgr16' | 'bgr' | 'bgrx' | 'xbgr' | 'rgba';

export interface BmpLayout extends RasterHeader {
  bits: number;
  compression: number;
  topDown: boolean;
  layout: PixelLayout;
  /** RGB triplets, 256 entries, for palette images. */
  palette: Uint8Array | undefined;
  /** Where the pixel data starts, as an absolute index into the bytes. */
  dataOffset: number;
}

const u16 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);
const u32 = (b: Uint8Array, o: number) =>
  (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
const i32 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24);

export function isBmp(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d;
}

/** A BMP file: `BM`, 14-byte file header, then the DIB. */
export function parseBmpFile(bytes: Uint8Array): BmpLayout {
  if (bytes.length < 18) throw truncated('bmp');
  return parseDib(bytes, 14, u32(bytes, 10), 'bmp');
}

/**
 * The DIB header at `start` (Pillow `_bitmap`). `fileOffset` is the file header's pixel offset (0 inside
 * ICO/CUR, where pixels follow the palette).
 */
export function parseDib(bytes: Uint8Array, start: number, fileOffset: number, format: string): BmpLayout {
  if (start + 4 > bytes.length) throw truncated(format);
  const headerSize = u32(bytes, start);
  if (![12, 40, 64, 108, 124].includes(headerSize)) {
    throw decodeFailed(format, `unsupported BMP header size ${headerSize}`);
  }
  if (start + headerSize > bytes.length) throw truncated(format);
  const h = start + 4;
  let width: number;
  let height: number;
  let bits: number;
  let compression = RAW;
  let colors = 0;
  let topDown = false;
  let pos = start + headerSize;
  let paletteEntryBytes = 4;
  let masks: [number, number, number, number] | undefined;
  if (headerSize === 12) {
    width = u16(bytes, h);
    height = u16(bytes, h + 2);
    bits = u16(bytes, h + 6);
    paletteEntryBytes = 3;
  } else {
    topDown = bytes[h + 7] === 0xff;
    width = i32(bytes, h);
    height = topDown ? -i32(bytes, h + 4) : u32(bytes, h + 4);
    bits = u16(bytes, h + 10);
    compression = u32(bytes, h + 12);
    colors = u32(bytes, h + 28);
    if (compression === BITFIELDS) {
      if (headerSize >= 56) {
        masks = [u32(bytes, h + 36), u32(bytes, h + 40), u32(bytes, h + 44), u32(bytes, h + 48)];
      } else {
        if (pos + 12 > bytes.length) throw truncated(format);
        masks = [u32(bytes, pos), u32(bytes, pos + 4), u32(bytes, pos + 8), 0];
        pos += 12;
      }
    }
  }
  checkDimensions(format, { width, height }, Number.MAX_SAFE_INTEGER);
  if (!colors) colors = 2 ** bits;
  let dataOffset = fileOffset;
  if (fileOffset === 14 + headerSize && bits <= 8) dataOffset += 4 * colors;

  const layout = pixelLayout(bits, compression, masks, format);

  let palette: Uint8Array | undefined;
  if (layout === 'palette') {
    palette = readPalette(bytes, pos, colors, paletteEntryBytes, format);
    pos += colors * paletteEntryBytes;
  }
  return {
    width,
    height,
    bits,
    compression,
    topDown,
    layout,
    palette,
    dataOffset: dataOffset || pos,
  };
}

/** How the pixels are stored, from the depth and the compression; refuses what Pillow refuses. */
function pixelLayout(
  bits: number,
  compression: number,
  masks: [number, number, number, number] | undefined,
  format: string,
): PixelLayout {
  let layout: PixelLayout;
  if (bits === 1 || bits === 4 || bits === 8) layout = 'palette';
  else if (bits === 16) layout = 'bgr15';
  else if (bits === 24) layout = 'bgr';
  else if (bits === 32) layout = 'bgrx';
  else throw decodeFailed(format, `unsupported BMP pixel depth ${bits}`);

  if (compression === BITFIELDS) {
    layout = bitfieldLayout(bits, masks!, format);
  } else if (compression === RLE8 || compression === RLE4) {
    if (layout !== 'palette') throw decodeFailed(format, `RLE compression with ${bits}-bit pixels`);
  } else if (compression !== RAW) {
    throw decodeFailed(format, `unsupported BMP compression ${compression}`);
  }
  return layout;
}

/** The colour table at `pos` as RGB triples (256 entries; a larger table's rest is skipped). */
function readPalette(
  bytes: Uint8Array,
  pos: number,
  colors: number,
  entryBytes: number,
  format: string,
): Uint8Array {
  if (!(colors > 0 && colors <= 65536)) throw decodeFailed(format, `unsupported palette size ${colors}`);
  const palette = new Uint8Array(256 * 3);
  const n = Math.min(colors, 256);
  if (pos + n * entryBytes > bytes.length) throw truncated(format);
  for (let i = 0; i < n; i++) {
    const p = pos + i * entryBytes;
    palette[i * 3] = bytes[p + 2]!;
    palette[i * 3 + 1] = bytes[p + 1]!;
    palette[i * 3 + 2] = bytes[p]!;
  }
  return palette;
}

/** The bitfield layouts Pillow accepts; anything else is an error there too. */
function bitfieldLayout(bits: number, m: [number, number, number, number], format: string): PixelLayout {
  const key = `${bits}:${m.map((v) => v.toString(16)).join(',')}`;
  const layouts: Record<string, PixelLayout> = {
    '32:ff0000,ff00,ff,0': 'bgrx',
    '32:ff000000,ff0000,ff00,0': 'xbgr',
    '32:ff000000,ff0000,ff00,ff': 'xbgr',
    '32:ff,ff00,ff0000,ff000000': 'rgba',
    '32:ff0000,ff00,ff,ff000000': 'bgrx',
    '32:0,0,0,0': 'bgrx',
    '24:ff0000,ff00,ff,0': 'bgr',
    '16:f800,7e0,1f,0': 'bgr16',
    '16:7c00,3e0,1f,0': 'bgr15',
  };
  // 24- and 16-bit layouts are matched on the colour masks alone.
  const layout =
    layouts[key] ??
    (bits !== 32
      ? layouts[
          `${bits}:${m
            .slice(0, 3)
            .map((v) => v.toString(16))
            .join(',')},0`
        ]
      : undefined);
  if (!layout) throw decodeFailed(format, 'unsupported BMP bitfields layout');
  return layout;
}

/** Decodes the pixels of a parsed layout: `rows` of them (an ICO's XOR bitmap is the first half). */
export function decodeBmpPixels(
  bytes: Uint8Array,
  l: BmpLayout,
  maxInputPixels: number,
  format: string,
): Raster {
  checkDimensions(format, l, maxInputPixels);
  const { width, height } = l;
  const rgb = new Uint8Array(width * height * 3);
  if (l.compression === RLE8 || l.compression === RLE4) {
    const indices = decodeRle(bytes, l, format);
    for (let y = 0; y < height; y++) {
      const src = (l.topDown ? y : height - 1 - y) * width;
      expandPalette(indices.subarray(src, src + width), l.palette!, rgb, y * width * 3);
    }
    return { width, height, channels: 3, data: rgb };
  }
  const stride = ((width * l.bits + 31) >>> 3) & ~3;
  // The last row needs only its pixels, not its padding.
  const need = stride * (height - 1) + Math.ceil((width * l.bits) / 8);
  if (l.dataOffset + need > bytes.length) throw truncated(format);
  const row = new Uint8Array(width);
  for (let y = 0; y < height; y++) {
    const s = l.dataOffset + (l.topDown ? y : height - 1 - y) * stride;
    const o = y * width * 3;
    switch (l.layout) {
      case 'palette': {
        unpackIndices(bytes, s, l.bits, width, row);
        expandPalette(row, l.palette!, rgb, o);
        break;
      }
      case 'bgr15':
      case 'bgr16':
        for (let x = 0; x < width; x++) {
          const p = bytes[s + 2 * x]! | (bytes[s + 2 * x + 1]! << 8);
          const q = o + 3 * x;
          if (l.layout === 'bgr15') {
            rgb[q] = expand5((p >> 10) & 31);
            rgb[q + 1] = expand5((p >> 5) & 31);
          } else {
            rgb[q] = expand5((p >> 11) & 31);
            rgb[q + 1] = expand6((p >> 5) & 63);
          }
          rgb[q + 2] = expand5(p & 31);
        }
        break;
      default: {
        const step = l.layout === 'bgr' ? 3 : 4;
        // Byte positions of R, G and B within a pixel.
        const [r, g, b] = l.layout === 'xbgr' ? [3, 2, 1] : l.layout === 'rgba' ? [0, 1, 2] : [2, 1, 0];
        for (let x = 0, p = s, q = o; x < width; x++, p += step, q += 3) {
          rgb[q] = bytes[p + r]!;
          rgb[q + 1] = bytes[p + g]!;
          rgb[q + 2] = bytes[p + b]!;
        }
      }
    }
  }
  return { width, height, channels: 3, data: rgb };
}

function unpackIndices(bytes: Uint8Array, s: number, bits: number, width: number, out: Uint8Array): void {
  if (bits === 8) {
    out.set(bytes.subarray(s, s + width));
  } else if (bits === 4) {
    for (let x = 0; x < width; x++) out[x] = (bytes[s + (x >> 1)]! >> (x & 1 ? 0 : 4)) & 15;
  } else {
    for (let x = 0; x < width; x++) out[x] = (bytes[s + (x >> 3)]! >> (7 - (x & 7))) & 1;
  }
}

function expandPalette(indices: Uint8Array, palette: Uint8Array, out: Uint8Array, o: number): void {
  for (let i = 0; i < indices.length; i++) {
    const p = indices[i]! * 3;
    out[o + 3 * i] = palette[p]!;
    out[o + 3 * i + 1] = palette[p + 1]!;
    out[o + 3 * i + 2] = palette[p + 2]!;
  }
}

/**
 * Pillow's BmpRleDecoder: palette indices in stored row order. Runs never spill past a row; a delta skips
 * pixels (left as index 0); an early end-of-bitmap leaves the rest at 0; running out of bytes before the
 * image is complete is a truncated file.
 */
function decodeRle(bytes: Uint8Array, l: BmpLayout, format: string): Uint8Array {
  const { width, height } = l;
  const total = width * height;
  const rle4 = l.compression === RLE4;
  const data = new Uint8Array(total);
  let n = 0; // pixels written (Pillow's len(data))
  let x = 0;
  let p = l.dataOffset;
  const put = (v: number) => {
    if (n < total) data[n] = v;
    n++;
  };
  while (n < total) {
    if (p + 2 > bytes.length) throw truncated(format);
    const count = bytes[p]!;
    const byte = bytes[p + 1]!;
    p += 2;
    if (count) {
      const run = x + count > width ? Math.max(0, width - x) : count;
      for (let i = 0; i < run; i++) put(rle4 ? (i % 2 === 0 ? byte >> 4 : byte & 15) : byte);
      x += run;
    } else if (byte === 0) {
      while (n % width !== 0) put(0);
      x = 0;
    } else if (byte === 1) {
      break;
    } else if (byte === 2) {
      if (p + 2 > bytes.length) throw truncated(format);
      const skip = bytes[p]! + bytes[p + 1]! * width;
      p += 2;
      for (let i = 0; i < skip && n < total; i++) put(0);
      x = n % width;
    } else {
      const byteCount = rle4 ? byte >> 1 : byte;
      if (p + byteCount > bytes.length) throw truncated(format);
      for (let i = 0; i < byteCount; i++) {
        const v = bytes[p + i]!;
        if (rle4) {
          put(v >> 4);
          put(v & 15);
        } else {
          put(v);
        }
      }
      p += byteCount;
      x += byte;
      if (p % 2 !== 0) p++;
    }
  }
  return data;
}

export function decodeBmp(bytes: Uint8Array, maxInputPixels: number): Raster {
  return decodeBmpPixels(bytes, parseBmpFile(bytes), maxInputPixels, 'bmp');
}
