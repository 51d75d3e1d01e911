import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { checkDimensions, decodeFailed, type Raster, type RasterHeader, truncated } from './raster';

/**
 * JPEG 2000, as a JP2 file (boxes around a codestream) or a bare J2K codestream, decoded by OpenJPEG
 * compiled to WebAssembly (`@cornerstonejs/codec-openjpeg`, the decoder OHIF/Cornerstone ship for DICOM).
 * The size comes from the codestream's SIZ marker before OpenJPEG sees the file. Samples deeper than
 * 8 bits are shifted down as Pillow does for colour (v >> (precision - 8)); alpha is dropped.
 */

const JP2_SIGNATURE = [0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a];

const u16 = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!;
const u32 = (b: Uint8Array, o: number) =>
  ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;

export function isJ2k(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 4 && bytes[0] === 0xff && bytes[1] === 0x4f && bytes[2] === 0xff && bytes[3] === 0x51
  );
}

export function isJp2(bytes: Uint8Array): boolean {
  return bytes.length >= 12 && JP2_SIGNATURE.every((v, i) => bytes[i] === v);
}

export interface J2kHeader extends RasterHeader {
  components: number;
  /** Offset of the codestream (FF4F) in the bytes. */
  codestream: number;
}

/** Finds the `jp2c` box (the codestream) among the top-level boxes of a JP2 file. */
function findCodestream(bytes: Uint8Array): number {
  let p = 0;
  while (p + 8 <= bytes.length) {
    let size = u32(bytes, p);
    const type = String.fromCharCode(bytes[p + 4]!, bytes[p + 5]!, bytes[p + 6]!, bytes[p + 7]!);
    let header = 8;
    if (size === 1) {
      if (p + 16 > bytes.length) break;
      size = u32(bytes, p + 8) * 2 ** 32 + u32(bytes, p + 12);
      header = 16;
    } else if (size === 0) {
      size = bytes.length - p;
    }
    if (type === 'jp2c') return p + header;
    if (size < header) throw decodeFailed('jp2', `invalid box size ${size}`);
    p += size;
  }
  throw truncated('jp2');
}

export function parseJ2k(bytes: Uint8Array): J2kHeader {
  const codestream = isJp2(bytes) ? findCodestream(bytes) : 0;
  const s = codestream;
  if (s + 42 > bytes.length) throw truncated('jp2');
  if (!isJ2k(bytes.subarray(s, s + 4))) throw decodeFailed('jp2', 'no codestream (SIZ) header');
  const width = u32(bytes, s + 8) - u32(bytes, s + 16);
  const height = u32(bytes, s + 12) - u32(bytes, s + 20);
  const components = u16(bytes, s + 40);
  // Pillow reads 1 to 4 components (L, LA, RGB, RGBA); more would also multiply the memory a frame takes
  // beyond what the pixel cap allows for.
  if (components < 1 || components > 4)
    throw decodeFailed('jp2', `unsupported component count ${components}`);
  if (s + 42 + 3 * components > bytes.length) throw truncated('jp2');
  for (let c = 0; c < components; c++) {
    const precision = (bytes[s + 42 + 3 * c]! & 0x7f) + 1;
    if (precision > 16) throw decodeFailed('jp2', `unsupported sample precision ${precision}`);
  }
  checkDimensions('jp2', { width, height }, Number.MAX_SAFE_INTEGER);
  return { width, height, components, codestream };
}

interface FrameInfo {
  width: number;
  height: number;
  bitsPerSample: number;
  componentCount: number;
  isSigned: boolean;
}

interface J2KDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array;
  getFrameInfo(): FrameInfo;
  decode(): void;
  delete(): void;
}

interface OpenJpegModule {
  J2KDecoder: new () => J2KDecoder;
}

let openjpeg: Promise<OpenJpegModule> | undefined;

function loadOpenJpeg(): Promise<OpenJpegModule> {
  if (!openjpeg) {
    const require = createRequire(import.meta.url);
    const factory = require('@cornerstonejs/codec-openjpeg/decodewasmjs') as (
      opts: object,
    ) => Promise<OpenJpegModule>;
    const wasmBinary = readFileSync(require.resolve('@cornerstonejs/codec-openjpeg/decodewasm'));
    // OpenJPEG's informational messages would go to stdout; errors surface as exceptions.
    openjpeg = factory({ wasmBinary, print: () => {}, printErr: () => {} });
  }
  return openjpeg;
}

export async function decodeJpeg2000(bytes: Uint8Array, maxInputPixels: number): Promise<Raster> {
  const header = parseJ2k(bytes);
  checkDimensions('jp2', header, maxInputPixels);
  const lib = await loadOpenJpeg();
  const decoder = new lib.J2KDecoder();
  try {
    decoder.getEncodedBuffer(bytes.length).set(bytes);
    try {
      decoder.decode();
    } catch (err) {
      throw decodeFailed('jp2', `OpenJPEG could not decode it (${describe(err)})`);
    }
    const info = decoder.getFrameInfo();
    if (info.width !== header.width || info.height !== header.height) {
      throw decodeFailed(
        'jp2',
        `decoded ${info.width}x${info.height}, header says ${header.width}x${header.height}`,
      );
    }
    return toRaster(decoder.getDecodedBuffer(), info);
  } finally {
    decoder.delete();
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  return typeof err === 'number' ? `error ${err}` : String(err);
}

function toRaster(decoded: Uint8Array, info: FrameInfo): Raster {
  const { width, height, componentCount: comps, bitsPerSample: bits } = info;
  const pixels = width * height;
  const wide = bits > 8;
  if (decoded.byteLength < pixels * comps * (wide ? 2 : 1)) throw truncated('jp2');
  const channels = comps >= 3 ? 3 : 1;
  const out = new Uint8Array(pixels * channels);
  const shift = Math.max(0, bits - 8);
  const offset = info.isSigned ? 2 ** (bits - 1) : 0;
  // 16-bit views need an even offset; the decoder's buffer normally has one.
  const src = wide && decoded.byteOffset % 2 ? decoded.slice() : decoded;
  const samples = wide ? new Uint16Array(src.buffer, src.byteOffset, pixels * comps) : src;
  const signed = wide
    ? new Int16Array(src.buffer, src.byteOffset, pixels * comps)
    : new Int8Array(src.buffer, src.byteOffset, pixels * comps);
  for (let i = 0; i < pixels; i++) {
    for (let c = 0; c < channels; c++) {
      const k = i * comps + c;
      const v = info.isSigned ? signed[k]! + offset : samples[k]!;
      out[i * channels + c] = Math.min(255, Math.max(0, v >> shift));
    }
  }
  return { width, height, channels: channels as 1 | 3, data: out };
}
