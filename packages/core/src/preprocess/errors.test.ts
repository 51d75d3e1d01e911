import { readFileSync } from 'node:fs';
import { crc32, deflateSync } from 'node:zlib';
import { parityImages } from '@embedpool/testkit';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { EmbedpoolError, type ErrorCode } from '../errors';
import { type PreprocessOptions, preprocess, toImageError } from '.';

const fixture = (name: string) => readFileSync(parityImages().find((i) => i.name === name)!.path);

async function codeOf(bytes: Uint8Array, options?: PreprocessOptions): Promise<ErrorCode | 'ok'> {
  try {
    await preprocess(bytes, options);
    return 'ok';
  } catch (err) {
    expect(err).toBeInstanceOf(EmbedpoolError);
    expect((err as EmbedpoolError).message.length).toBeGreaterThan(0);
    return (err as EmbedpoolError).code;
  }
}

function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), 8 + data.length);
  return out;
}

/** A valid PNG header claiming width x height (8-bit grey) with a tiny IDAT: a decompression bomb's header. */
function bombPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  const idat = deflateSync(Buffer.alloc(64 * 1024), { level: 9 }); // zeros: a few rows' worth
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', idat),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

const SVG = Buffer.from(
  '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="300" height="200">' +
    '<rect width="300" height="200" fill="#08f"/></svg>',
);

describe('bad input yields a typed EmbedpoolError', () => {
  it('zero bytes -> IMAGE_EMPTY', async () => {
    expect(await codeOf(new Uint8Array(0))).toBe('IMAGE_EMPTY');
  });

  it('text -> IMAGE_UNSUPPORTED_FORMAT', async () => {
    expect(await codeOf(Buffer.from('hello, this is not an image\n'.repeat(20)))).toBe(
      'IMAGE_UNSUPPORTED_FORMAT',
    );
    expect(await codeOf(Buffer.from('{"json": true}'))).toBe('IMAGE_UNSUPPORTED_FORMAT');
  });

  it('random bytes -> IMAGE_UNSUPPORTED_FORMAT', async () => {
    const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) & 255));
    expect(await codeOf(bytes)).toBe('IMAGE_UNSUPPORTED_FORMAT');
  });

  it('corrupt bytes after a JPEG header -> IMAGE_DECODE_FAILED', async () => {
    const jpeg = fixture('grace_hopper.jpg');
    const corrupt = Buffer.concat([jpeg.subarray(0, 400), Buffer.alloc(8000, 0x55)]);
    expect(await codeOf(corrupt)).toBe('IMAGE_DECODE_FAILED');
  });

  it('a JPEG cut in half -> IMAGE_DECODE_FAILED', async () => {
    const jpeg = fixture('china.jpg');
    expect(await codeOf(jpeg.subarray(0, jpeg.length >> 1))).toBe('IMAGE_DECODE_FAILED');
  });

  it('a PNG cut in half -> IMAGE_DECODE_FAILED', async () => {
    const png = fixture('china_palette.png');
    expect(await codeOf(png.subarray(0, png.length >> 1))).toBe('IMAGE_DECODE_FAILED');
  });

  it('SVG is refused by default, decodes when allowed', async () => {
    expect(await codeOf(SVG)).toBe('IMAGE_UNSUPPORTED_FORMAT');
    expect(await codeOf(Buffer.concat([Buffer.from('\ufeff  \n'), SVG]))).toBe('IMAGE_UNSUPPORTED_FORMAT');
    expect(await codeOf(SVG, { allowedFormats: ['png', 'svg'] })).toBe('ok');
  });

  it('a format outside a custom allow-list -> IMAGE_UNSUPPORTED_FORMAT', async () => {
    expect(await codeOf(fixture('grace_hopper.jpg'), { allowedFormats: ['png'] })).toBe(
      'IMAGE_UNSUPPORTED_FORMAT',
    );
  });

  it('more bytes than maxBytes -> IMAGE_TOO_LARGE', async () => {
    expect(await codeOf(fixture('grace_hopper.jpg'), { maxBytes: 1000 })).toBe('IMAGE_TOO_LARGE');
  });

  it('a few-KB PNG claiming 30000x30000 or 100000x100000 -> IMAGE_TOO_MANY_PIXELS, fast, no allocation', async () => {
    for (const [w, h] of [
      [30_000, 30_000],
      [100_000, 100_000],
    ] as const) {
      const bomb = bombPng(w, h);
      expect(bomb.length).toBeLessThan(4096);
      const rss = process.memoryUsage().rss;
      const started = performance.now();
      let error: unknown;
      await preprocess(bomb).catch((err: unknown) => {
        error = err;
      });
      expect(error).toBeInstanceOf(EmbedpoolError);
      expect((error as EmbedpoolError).code).toBe('IMAGE_TOO_MANY_PIXELS');
      expect((error as EmbedpoolError).details).toMatchObject({ width: w, height: h });
      // Decoding would need w*h bytes (900 MB / 10 GB); the header check must reject before that.
      expect(process.memoryUsage().rss - rss).toBeLessThan(64 * 1024 * 1024);
      expect(performance.now() - started).toBeLessThan(2000);
    }
  });

  it('more pixels than a configured maxInputPixels -> IMAGE_TOO_MANY_PIXELS', async () => {
    expect(await codeOf(fixture('china_large_3000x2000.jpg'), { maxInputPixels: 3000 * 2000 - 1 })).toBe(
      'IMAGE_TOO_MANY_PIXELS',
    );
    expect(await codeOf(fixture('china_large_3000x2000.jpg'), { maxInputPixels: 3000 * 2000 })).toBe('ok');
  });

  it('fixture images pass the default failOn level', async () => {
    for (const img of parityImages()) expect(await codeOf(readFileSync(img.path)), img.name).toBe('ok');
  });

  it('damaged fixtures never crash: each resolves or rejects with an image error code', async () => {
    const allowed = new Set<string>([
      'ok',
      'IMAGE_DECODE_FAILED',
      'IMAGE_UNSUPPORTED_FORMAT',
      'IMAGE_TOO_MANY_PIXELS',
    ]);
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const names = [
      'grace_hopper.jpg',
      'china_palette.png',
      'hopper.webp',
      'present_rgba.png',
      'hopper_tiny_16.png',
    ];
    for (const name of names) {
      const original = fixture(name);
      for (let trial = 0; trial < 6; trial++) {
        const bytes = Buffer.from(original);
        const flips = 1 + Math.floor(rand() * 8);
        for (let f = 0; f < flips; f++)
          bytes[Math.floor(rand() * Math.min(bytes.length, 2048))] = Math.floor(rand() * 256);
        const cut = rand() < 0.3 ? bytes.subarray(0, Math.floor(bytes.length * rand())) : bytes;
        const code = await codeOf(cut);
        expect(allowed.has(code), `${name} trial ${trial}: ${code}`).toBe(true);
      }
    }
  });

  it('maps libvips failures to codes', () => {
    expect(toImageError(new Error('timeout: 37% complete')).code).toBe('IMAGE_DECODE_TIMEOUT');
    expect(toImageError(new Error('Input image exceeds pixel limit')).code).toBe('IMAGE_TOO_MANY_PIXELS');
    expect(toImageError(new Error('Input buffer contains unsupported image format')).code).toBe(
      'IMAGE_UNSUPPORTED_FORMAT',
    );
    expect(toImageError(new Error('VipsJpeg: premature end of JPEG image')).code).toBe('IMAGE_DECODE_FAILED');
    const typed = new EmbedpoolError('IMAGE_EMPTY', 'x');
    expect(toImageError(typed)).toBe(typed);
  });

  it('a generated large image still decodes under the default limits', async () => {
    const big = await sharp({ create: { width: 4000, height: 3000, channels: 3, background: '#336699' } })
      .png({ compressionLevel: 1 })
      .toBuffer();
    expect(await codeOf(big)).toBe('ok');
  });
});
