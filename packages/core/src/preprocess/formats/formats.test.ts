import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import {
  cosine,
  encodeBmp,
  encodeDib,
  encodeIco,
  encodePnm,
  encodeTga,
  FORMATS_DIR,
  type Pixels,
  posterize,
} from '@embedpool/testkit';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbedpoolError, type ErrorCode } from '../../errors';
import { type PreprocessOptions, preprocess } from '..';
import { decodeBmp } from './bmp';
import { decodeIcoDib, parseIco } from './ico';
import { sniffExtraFormat } from './index';
import { decodePnm } from './pnm';
import { decodeTga } from './tga';
import { DecodeThreadPool } from './thread-pool';

const fixture = (name: string) => readFileSync(join(FORMATS_DIR, name));
const BIG = 1 << 30;

async function pixelsOf(png: Uint8Array, grey = false): Promise<Pixels> {
  let p = sharp(png);
  if (grey) p = p.toColourspace('b-w');
  const { data, info } = await p.raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: info.channels as 1 | 3, data };
}

async function png(p: Pixels): Promise<Buffer> {
  return sharp(p.data, { raw: { width: p.width, height: p.height, channels: p.channels } })
    .png()
    .toBuffer();
}

async function codeOf(bytes: Uint8Array, options?: PreprocessOptions): Promise<ErrorCode | 'ok'> {
  try {
    await preprocess(bytes, options);
    return 'ok';
  } catch (err) {
    expect(err).toBeInstanceOf(EmbedpoolError);
    return (err as EmbedpoolError).code;
  }
}

let photo: Pixels;
let small: Pixels; // 37x23: odd sizes exercise row padding
let grey: Pixels;

beforeAll(async () => {
  photo = await pixelsOf(fixture('photo.png'));
  const tiny = await sharp(fixture('photo.png')).resize(37, 23, { fit: 'fill' }).png().toBuffer();
  small = await pixelsOf(tiny);
  grey = await pixelsOf(tiny, true);
});

describe('each decoder gives back the pixels it was given', () => {
  it('BMP: 24 and 32-bit, bitfields, 16-bit, top-down, palettes of 1, 4 and 8 bits, RLE8 and RLE4', () => {
    const exact = (p: Pixels, bytes: Uint8Array) => {
      const r = decodeBmp(bytes, BIG);
      expect([r.width, r.height, r.channels]).toEqual([p.width, p.height, 3]);
      const want = p.channels === 3 ? p.data : Uint8Array.from(Array.from(p.data).flatMap((v) => [v, v, v]));
      expect(Buffer.from(r.data).equals(Buffer.from(want))).toBe(true);
    };
    exact(small, encodeBmp(small, { bits: 24 }));
    exact(small, encodeBmp(small, { bits: 24, topDown: true }));
    exact(small, encodeBmp(small, { bits: 32 }));
    exact(small, encodeBmp(small, { bits: 32, bitfields: true }));
    const p256 = posterize(small, 6);
    exact(p256, encodeBmp(p256, { bits: 8 }));
    exact(p256, encodeBmp(p256, { bits: 8, rle: true }));
    exact(p256, encodeBmp(p256, { bits: 8, rle: true, topDown: true }));
    const p16 = posterize(small, 2);
    exact(p16, encodeBmp(p16, { bits: 4 }));
    exact(p16, encodeBmp(p16, { bits: 4, rle: true }));
    const bw = posterize(grey, 2);
    exact(bw, encodeBmp(bw, { bits: 1 }));
    // 16-bit 5-5-5: colours on the 5-bit grid come back as Pillow expands them (v * 255 / 31).
    const five = { ...small, data: small.data.map((v) => (((v >> 3) * 255) / 31) | 0) };
    exact(five, encodeBmp(five, { bits: 16 }));
  });

  it('PNM: P1-P6, 8-bit, 16-bit and an odd maxval', () => {
    const check = (bytes: Uint8Array, want: Pixels) => {
      const r = decodePnm(bytes, BIG);
      expect([r.width, r.height, r.channels]).toEqual([want.width, want.height, want.channels]);
      expect(Buffer.from(r.data).equals(Buffer.from(want.data))).toBe(true);
    };
    check(encodePnm(small, 6), small);
    check(encodePnm(small, 3), small);
    check(encodePnm(small, 6, 65535), small);
    check(encodePnm(grey, 5), grey);
    check(encodePnm(grey, 2), grey);
    check(encodePnm(grey, 5, 65535), grey);
    const bw = posterize(grey, 2);
    check(encodePnm(bw, 4), bw);
    check(encodePnm(bw, 1), bw);
    // maxval 3: round(v / 3 * 255) with ties to even -> 0, 85, 170, 255.
    const four = posterize(grey, 4);
    check(encodePnm(four, 5, 3), four);
  });

  it('TGA: true colour 24/32-bit, grey, colour-mapped, RLE, top-down', () => {
    const check = (bytes: Uint8Array, want: Pixels) => {
      expect(sniffExtraFormat(bytes)).toBe('tga');
      const r = decodeTga(bytes, BIG);
      expect([r.width, r.height, r.channels]).toEqual([want.width, want.height, want.channels]);
      expect(Buffer.from(r.data).equals(Buffer.from(want.data))).toBe(true);
    };
    check(encodeTga(small, { type: 2 }), small);
    check(encodeTga(small, { type: 2, depth: 32, topDown: true }), small);
    check(encodeTga(small, { type: 2, rle: true }), small);
    check(encodeTga(grey, { type: 3 }), grey);
    check(encodeTga(grey, { type: 3, rle: true }), grey);
    const pal = posterize(small, 6);
    check(encodeTga(pal, { type: 1 }), pal);
    check(encodeTga(pal, { type: 1, rle: true }), pal);
  });

  it('ICO and CUR: the entry Pillow picks (the largest, then the deepest), BMP or PNG', async () => {
    const bigger = {
      width: photo.width,
      height: photo.height,
      bits: 32,
      data: encodeDib(photo, { bits: 32 }, 2),
    };
    const smaller = { width: 37, height: 23, bits: 32, data: encodeDib(small, { bits: 32 }, 2) };
    const ico = encodeIco([smaller, bigger, smaller]);
    const entry = parseIco(ico);
    expect(entry.kind).toBe('dib');
    const r = decodeIcoDib(ico, entry, BIG);
    expect([r.width, r.height]).toEqual([photo.width, photo.height]);
    expect(Buffer.from(r.data).equals(Buffer.from(photo.data))).toBe(true);
    // Same size: the deeper entry wins.
    const p16 = posterize(small, 2);
    const four = { width: 37, height: 23, bits: 4, data: encodeDib(p16, { bits: 4 }, 2) };
    const deep = encodeIco([smaller, four]);
    const chosen = decodeIcoDib(deep, parseIco(deep), BIG);
    expect(Buffer.from(chosen.data).equals(Buffer.from(small.data))).toBe(true);
    // A PNG entry is a PNG.
    const withPng = encodeIco([smaller, { width: 256, height: 256, bits: 32, data: fixture('photo.png') }]);
    expect(parseIco(withPng)).toMatchObject({ kind: 'png' });
    // CUR: a BMP entry.
    const cur = encodeIco([smaller], 2);
    expect(sniffExtraFormat(cur)).toBe('ico');
    expect(Buffer.from(decodeIcoDib(cur, parseIco(cur), BIG).data).equals(Buffer.from(small.data))).toBe(
      true,
    );
  });
});

describe('decoded exactly as Pillow, the Azure endpoint decoder, decodes them', () => {
  it('every file in fixtures/formats/pillow gives the bytes Pillow 9.4 gave', async () => {
    const dir = join(FORMATS_DIR, 'pillow');
    const files = readdirSync(dir).filter((f) => !f.endsWith('.rgb'));
    expect(files.length).toBeGreaterThanOrEqual(25);
    for (const f of files) {
      const bytes = readFileSync(join(dir, f));
      const ref = readFileSync(join(dir, `${f}.rgb`));
      const format = sniffExtraFormat(bytes);
      let r: { width: number; height: number; channels: number; data: Uint8Array };
      if (format === 'bmp') r = decodeBmp(bytes, BIG);
      else if (format === 'ppm') r = decodePnm(bytes, BIG);
      else if (format === 'tga') r = decodeTga(bytes, BIG);
      else if (format === 'ico') {
        const entry = parseIco(bytes);
        if (entry.kind === 'png') {
          const { data, info } = await sharp(bytes.subarray(entry.offset))
            .removeAlpha()
            .raw()
            .toBuffer({ resolveWithObject: true });
          r = { width: info.width, height: info.height, channels: 3, data };
        } else {
          r = decodeIcoDib(bytes, entry, BIG);
        }
      } else throw new Error(`${f}: not sniffed (${format})`);
      const rgb = r.channels === 3 ? r.data : Uint8Array.from(Array.from(r.data).flatMap((v) => [v, v, v]));
      expect([r.width, r.height], f).toEqual([ref.readUInt16LE(0), ref.readUInt16LE(2)]);
      expect(Buffer.from(rgb).equals(ref.subarray(4)), f).toBe(true);
    }
  });
});

describe('the same pixels in every format give the same model input', () => {
  it('lossless formats: identical tensors to the PNG of those pixels (downscaled and upscaled)', async () => {
    for (const p of [photo, small]) {
      const want = await preprocess(await png(p));
      const files: Record<string, Uint8Array> = {
        bmp24: encodeBmp(p, { bits: 24 }),
        bmp32: encodeBmp(p, { bits: 32, bitfields: true }),
        ppm: encodePnm(p, 6),
        ppm16: encodePnm(p, 6, 65535),
        tga: encodeTga(p, { type: 2 }),
        tgaRle: encodeTga(p, { type: 2, rle: true }),
        ico: encodeIco([{ width: p.width, height: p.height, bits: 32, data: encodeDib(p, { bits: 32 }, 2) }]),
        icoPng: encodeIco([{ width: p.width, height: p.height, bits: 32, data: await png(p) }]),
      };
      for (const [name, bytes] of Object.entries(files)) {
        const got = await preprocess(bytes);
        expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer)), name).toBe(true);
      }
    }
    const wantGrey = await preprocess(await png(grey));
    for (const bytes of [encodePnm(grey, 5), encodePnm(grey, 5, 65535), encodeTga(grey, { type: 3 })]) {
      expect(Buffer.from((await preprocess(bytes)).buffer).equals(Buffer.from(wantGrey.buffer))).toBe(true);
    }
  });

  it('JPEG 2000 (lossless, JP2 and J2K) equals the PNG; HEIC and AVIF are close to it', async () => {
    const want = await preprocess(fixture('photo.png'));
    for (const name of ['photo.jp2', 'photo.j2k']) {
      expect(
        Buffer.from((await preprocess(fixture(name))).buffer).equals(Buffer.from(want.buffer)),
        name,
      ).toBe(true);
    }
    expect(cosine(await preprocess(fixture('photo.heic')), want)).toBeGreaterThan(0.99);
    expect(cosine(await preprocess(fixture('photo.avif')), want)).toBeGreaterThan(0.99);
  });
});

describe('formats are sniffed from the bytes', () => {
  it('names each extra format and leaves sharp formats and junk alone', async () => {
    expect(sniffExtraFormat(encodeBmp(small, { bits: 24 }))).toBe('bmp');
    expect(sniffExtraFormat(encodePnm(small, 6))).toBe('ppm');
    expect(sniffExtraFormat(fixture('photo.jp2'))).toBe('jp2');
    expect(sniffExtraFormat(fixture('photo.j2k'))).toBe('jp2');
    expect(sniffExtraFormat(fixture('photo.heic'))).toBe('heic');
    expect(sniffExtraFormat(fixture('photo.avif'))).toBeUndefined();
    expect(sniffExtraFormat(fixture('photo.png'))).toBeUndefined();
    for (const f of ['jpeg', 'webp', 'gif', 'tiff'] as const) {
      const bytes = await sharp(fixture('photo.png')).toFormat(f).toBuffer();
      expect(sniffExtraFormat(bytes), f).toBeUndefined();
    }
    expect(sniffExtraFormat(Buffer.from('hello, this is not an image\n'.repeat(5)))).toBeUndefined();
  });

  it('the allow-list applies to the new formats too', async () => {
    expect(await codeOf(encodeBmp(small, { bits: 24 }), { allowedFormats: ['png'] })).toBe(
      'IMAGE_UNSUPPORTED_FORMAT',
    );
    expect(await codeOf(fixture('photo.heic'), { allowedFormats: ['png', 'heif'] })).toBe(
      'IMAGE_UNSUPPORTED_FORMAT',
    );
  });
});

/** Writes a 100000 x 100000 size into a valid file's header. */
function hugeHeaders(): Record<string, Uint8Array> {
  const bmp = Buffer.from(encodeBmp(small, { bits: 24 }));
  bmp.writeInt32LE(100_000, 18);
  bmp.writeInt32LE(100_000, 22);
  const ppm = Buffer.from('P6\n100000 100000\n255\n\x00\x00\x00', 'latin1');
  const tga = Buffer.from(encodeTga(small, { type: 2 }));
  tga.writeUInt16LE(65_535, 12);
  tga.writeUInt16LE(65_535, 14);
  const dib = Buffer.from(encodeDib(small, { bits: 32 }, 2));
  dib.writeInt32LE(100_000, 4);
  dib.writeInt32LE(200_000, 8);
  const ico = encodeIco([{ width: 0, height: 0, bits: 32, data: dib }]);
  const jp2 = Buffer.from(fixture('photo.j2k'));
  jp2.writeUInt32BE(100_000, 8);
  jp2.writeUInt32BE(100_000, 12);
  const heic = Buffer.from(fixture('photo.heic'));
  const ispe = heic.indexOf('ispe');
  heic.writeUInt32BE(100_000, ispe + 8);
  heic.writeUInt32BE(100_000, ispe + 12);
  return { bmp, ppm, tga, ico, jp2, heic };
}

describe('hostile files: a typed error, no allocation from the header, and the decoders carry on', () => {
  it('headers declaring 100000 x 100000 pixels -> IMAGE_TOO_MANY_PIXELS', async () => {
    for (const [name, bytes] of Object.entries(hugeHeaders())) {
      const rss = process.memoryUsage().rss;
      let error: unknown;
      await preprocess(bytes).catch((err: unknown) => {
        error = err;
      });
      expect((error as EmbedpoolError).code, name).toBe('IMAGE_TOO_MANY_PIXELS');
      expect(process.memoryUsage().rss - rss, name).toBeLessThan(256 * 1024 * 1024);
    }
  });

  it('truncated files -> IMAGE_DECODE_FAILED naming the truncation', async () => {
    const files: Record<string, Uint8Array> = {
      bmp: encodeBmp(photo, { bits: 24 }),
      bmpRle: encodeBmp(posterize(photo, 6), { bits: 8, rle: true }),
      ppm: encodePnm(photo, 6),
      pgmPlain: encodePnm(grey, 2),
      tga: encodeTga(photo, { type: 2 }),
      tgaRle: encodeTga(photo, { type: 2, rle: true }),
      ico: encodeIco([{ width: 0, height: 0, bits: 32, data: encodeDib(photo, { bits: 32 }, 2) }]),
      jp2: fixture('photo.jp2'),
      heic: fixture('photo.heic'),
    };
    for (const [name, bytes] of Object.entries(files)) {
      const cut = bytes.subarray(0, Math.floor(bytes.length * 0.6));
      let error: unknown;
      await preprocess(cut).catch((err: unknown) => {
        error = err;
      });
      expect(error, name).toBeInstanceOf(EmbedpoolError);
      expect((error as EmbedpoolError).code, name).toBe('IMAGE_DECODE_FAILED');
      if (name !== 'jp2') expect((error as EmbedpoolError).message, name).toMatch(/truncated/);
    }
  });

  it('an ICO directory pointing outside the file -> IMAGE_DECODE_FAILED (entry_outside_file)', async () => {
    const ico = Buffer.from(
      encodeIco([{ width: 37, height: 23, bits: 32, data: encodeDib(small, { bits: 32 }, 2) }]),
    );
    ico.writeUInt32LE(0x7fff_0000, 6 + 12);
    let error: unknown;
    await preprocess(ico).catch((err: unknown) => {
      error = err;
    });
    expect((error as EmbedpoolError).code).toBe('IMAGE_DECODE_FAILED');
    expect((error as EmbedpoolError).details).toMatchObject({ reason: 'entry_outside_file' });
    // And after all of the above, a good file still decodes.
    expect(await codeOf(fixture('photo.heic'))).toBe('ok');
  });
});

describe('decoder threads', () => {
  const pool = new DecodeThreadPool(1);
  afterAll(() => pool.close());

  it('a decode past its time limit -> IMAGE_DECODE_TIMEOUT, its thread is replaced and the next one works', async () => {
    const bytes = fixture('photo.heic');
    // A limit far below the time a thread takes to start and load libheif: the timer must fire first.
    const late = pool.run({
      op: 'decode',
      format: 'heic',
      bytes,
      maxInputPixels: BIG,
      timeoutSeconds: 0.001,
    });
    await expect(late).rejects.toMatchObject({ code: 'IMAGE_DECODE_TIMEOUT' });
    const ok = await pool.run({
      op: 'decode',
      format: 'heic',
      bytes,
      maxInputPixels: BIG,
      timeoutSeconds: 0,
    });
    expect(ok.raster).toMatchObject({ width: 288, height: 216, channels: 3 });
    // Off the caller's event loop: another thread did the work.
    expect(ok.threadId).not.toBe(threadId);
  });
});
