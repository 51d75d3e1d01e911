import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { EmbedpoolError } from '../../errors';
import { checkDimensions, decodeFailed, type Raster, type RasterHeader, truncated } from './raster';

/**
 * HEIC/HEIF (HEVC-coded HEIF, what phones write) decoded by libheif compiled to WebAssembly
 * (`libheif-js`, libheif with libde265). The prebuilt sharp decodes AVIF but has no HEVC decoder. The
 * primary image is decoded, with its rotation and mirroring applied (as pillow-heif does), to 8-bit RGB,
 * alpha dropped. Its size comes from the container before anything is decoded.
 *
 * AVIF files are left to sharp: `isHeicContainer` accepts only an `ftyp` whose brands do not name AVIF.
 */

const HEIF_BRANDS = new Set(['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'hevm', 'hevs', 'mif1', 'msf1']);
const AVIF_BRANDS = new Set(['avif', 'avis']);

export function isHeicContainer(bytes: Uint8Array): boolean {
  if (bytes.length < 16) return false;
  if (String.fromCharCode(...bytes.subarray(4, 8)) !== 'ftyp') return false;
  const size = ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
  const end = Math.min(size, bytes.length, 4096);
  if (size < 16) return false;
  const brands = [String.fromCharCode(...bytes.subarray(8, 12))];
  for (let p = 16; p + 4 <= end; p += 4) brands.push(String.fromCharCode(...bytes.subarray(p, p + 4)));
  if (brands.some((b) => AVIF_BRANDS.has(b))) return false;
  return brands.some((b) => HEIF_BRANDS.has(b));
}

interface HeifError {
  code: { value: number };
  subcode: { value: number };
  message: string;
}

interface HeifChannel {
  id: { value: number };
  width: number;
  height: number;
  stride: number;
  data: Uint8Array;
}

interface HeifDecoded {
  image: unknown;
  width: number;
  height: number;
  channels: HeifChannel[];
  code?: unknown;
}

type Handle = { code?: unknown } | null | undefined;

interface LibHeif {
  heif_context_alloc(): unknown;
  heif_context_free(ctx: unknown): void;
  heif_context_read_from_memory(ctx: unknown, bytes: Uint8Array): HeifError;
  heif_js_context_get_primary_image_handle(ctx: unknown): Handle;
  heif_image_handle_get_width(h: Handle): number;
  heif_image_handle_get_height(h: Handle): number;
  heif_image_handle_release(h: Handle): void;
  heif_js_decode_image2(h: Handle, colorspace: unknown, chroma: unknown): HeifDecoded | null;
  heif_image_release(img: unknown): void;
  heif_colorspace: { heif_colorspace_RGB: unknown };
  heif_chroma: { heif_chroma_interleaved_RGB: unknown };
  heif_channel: { heif_channel_interleaved: { value: number } };
}

/** libheif's heif_suberror_Security_limit_exceeded and heif_suberror_End_of_data. */
const SECURITY_LIMIT = 1000;
const END_OF_DATA = 100;

let libheif: LibHeif | undefined;

function loadLibheif(): LibHeif {
  if (!libheif) {
    const require = createRequire(import.meta.url);
    const dir = join(dirname(require.resolve('libheif-js/package.json')), 'libheif-wasm');
    const factory = require(join(dir, 'libheif.js')) as (opts: object) => LibHeif;
    // This build instantiates synchronously when handed the binary.
    libheif = factory({
      wasmBinary: readFileSync(join(dir, 'libheif.wasm')),
      print: () => {},
      printErr: () => {},
    });
  }
  return libheif;
}

function failure(err: HeifError, maxInputPixels: number): EmbedpoolError {
  if (err.subcode.value === SECURITY_LIMIT) {
    return new EmbedpoolError(
      'IMAGE_TOO_MANY_PIXELS',
      `HEIF image exceeds libheif's size limits: ${err.message}`,
      {
        details: { format: 'heic', maxInputPixels },
      },
    );
  }
  if (err.subcode.value === END_OF_DATA) return truncated('heic');
  return decodeFailed('heic', err.message);
}

/** Parses the container (no pixels decoded), checks the primary image's size, then maybe decodes it. */
function withPrimary<T>(
  bytes: Uint8Array,
  maxInputPixels: number,
  use: (lib: LibHeif, handle: Handle, header: RasterHeader) => T,
): T {
  const lib = loadLibheif();
  const ctx = lib.heif_context_alloc();
  if (!ctx) throw new EmbedpoolError('INTERNAL', 'libheif could not allocate a context');
  try {
    const err = lib.heif_context_read_from_memory(ctx, bytes);
    if (err.code.value !== 0) throw failure(err, maxInputPixels);
    const handle = lib.heif_js_context_get_primary_image_handle(ctx);
    if (!handle || handle.code) throw decodeFailed('heic', 'no primary image');
    try {
      const header = {
        width: lib.heif_image_handle_get_width(handle),
        height: lib.heif_image_handle_get_height(handle),
      };
      checkDimensions('heic', header, maxInputPixels);
      return use(lib, handle, header);
    } finally {
      lib.heif_image_handle_release(handle);
    }
  } finally {
    lib.heif_context_free(ctx);
  }
}

export function probeHeic(bytes: Uint8Array, maxInputPixels: number): RasterHeader {
  return withPrimary(bytes, maxInputPixels, (_lib, _handle, header) => header);
}

export function decodeHeic(bytes: Uint8Array, maxInputPixels: number): Raster {
  return withPrimary(bytes, maxInputPixels, (lib, handle, { width, height }) => {
    const img = lib.heif_js_decode_image2(
      handle,
      lib.heif_colorspace.heif_colorspace_RGB,
      lib.heif_chroma.heif_chroma_interleaved_RGB,
    );
    if (!img || img.code || !img.channels) {
      const e = img as unknown as Partial<HeifError> | null;
      if (e?.code && e.subcode && typeof e.message === 'string')
        throw failure(e as HeifError, maxInputPixels);
      throw decodeFailed('heic', 'libheif could not decode the image');
    }
    try {
      const plane = img.channels.find((c) => c.id.value === lib.heif_channel.heif_channel_interleaved.value);
      if (!plane || plane.width !== width || plane.height !== height) {
        throw decodeFailed('heic', 'decoded image does not match its header');
      }
      const data = new Uint8Array(width * height * 3);
      const row = width * 3;
      for (let y = 0; y < height; y++)
        data.set(plane.data.subarray(y * plane.stride, y * plane.stride + row), y * row);
      return { width, height, channels: 3, data };
    } finally {
      lib.heif_image_release(img.image);
    }
  });
}
