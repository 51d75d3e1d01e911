import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
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
import { JobEvents, postJson, startStack, testConfig, waitJobFinal } from '../support/stack';

/**
 * Every format the Azure endpoint's Pillow reads, and the phone formats, through the whole service: the
 * same pixels as PNG and as each format give the same vector; hostile files get a 400 with their own code
 * and the service carries on.
 */

const fixture = (name: string) => readFileSync(join(FORMATS_DIR, name));
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

function azureBody(images: string[]) {
  return { input_data: { columns: ['image'], index: images.map((_, i) => i), data: images.map((i) => [i]) } };
}

let stack: Awaited<ReturnType<typeof startStack>>;
let files: Server;
let filesUrl: string;
const served = new Map<string, Uint8Array>();
let photo: Pixels;
let grey: Pixels;

beforeAll(async () => {
  stack = await startStack(testConfig({ MAX_BATCH_SIZE: '8', FETCH_ALLOW: '127.0.0.0/8' }));
  // Served with a misleading name and content type: the format must come from the bytes.
  files = createServer((req, res) => {
    const body = served.get(req.url ?? '');
    if (!body) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'image/jpeg' }).end(body);
  });
  await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
  filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
  const rgb = await sharp(fixture('photo.png')).raw().toBuffer({ resolveWithObject: true });
  photo = { width: rgb.info.width, height: rgb.info.height, channels: 3, data: rgb.data };
  const g = await sharp(fixture('photo.png'))
    .toColourspace('b-w')
    .raw()
    .toBuffer({ resolveWithObject: true });
  grey = { width: g.info.width, height: g.info.height, channels: 1, data: g.data };
});

afterAll(async () => {
  await stack?.stop();
  await new Promise((r) => files?.close(r));
});

async function png(p: Pixels): Promise<Buffer> {
  return sharp(p.data, { raw: { width: p.width, height: p.height, channels: p.channels } })
    .png()
    .toBuffer();
}

async function score(images: string[]) {
  return postJson(`${stack.api.url}/score`, azureBody(images));
}

describe('the same pixels as PNG and in each format give the same vector through /score', () => {
  it('lossless formats: cosine >= 0.99999 to the PNG', async () => {
    const palette = posterize(photo, 6);
    const cases: [string, Uint8Array, Pixels][] = [
      ['bmp 24-bit', encodeBmp(photo, { bits: 24 }), photo],
      ['bmp 32-bit bitfields', encodeBmp(photo, { bits: 32, bitfields: true }), photo],
      ['bmp 8-bit RLE', encodeBmp(palette, { bits: 8, rle: true }), palette],
      [
        'ico (BMP entry)',
        encodeIco([{ width: 0, height: 0, bits: 32, data: encodeDib(photo, { bits: 32 }, 2) }]),
        photo,
      ],
      [
        'cur',
        encodeIco([{ width: 0, height: 0, bits: 24, data: encodeDib(photo, { bits: 24 }, 2) }], 2),
        photo,
      ],
      ['ppm P6', encodePnm(photo, 6), photo],
      ['ppm P6 16-bit', encodePnm(photo, 6, 65535), photo],
      ['ppm P3 plain', encodePnm(photo, 3), photo],
      ['pgm P5', encodePnm(grey, 5), grey],
      ['pgm P2 16-bit', encodePnm(grey, 2, 65535), grey],
      ['tga', encodeTga(photo, { type: 2 }), photo],
      ['tga RLE', encodeTga(photo, { type: 2, rle: true }), photo],
      ['tga colour-mapped RLE', encodeTga(palette, { type: 1, rle: true }), palette],
      ['jp2', fixture('photo.jp2'), photo],
      ['j2k', fixture('photo.j2k'), photo],
    ];
    const pngs = await Promise.all(cases.map(([, , p]) => png(p)));
    const { status, json } = await score([...pngs.map(b64), ...cases.map(([, bytes]) => b64(bytes))]);
    expect(status).toBe(200);
    const vectors = (json as { image_features: number[] }[]).map((r) => r.image_features);
    cases.forEach(([name], i) => {
      const c = cosine(vectors[i]!, vectors[cases.length + i]!);
      expect(c, name).toBeGreaterThanOrEqual(0.99999);
    });
  });

  it('HEIC and AVIF (made with heif-enc and avifenc): cosine >= 0.99 to the PNG they were encoded from', async () => {
    const { status, json } = await score(
      [fixture('photo.png'), fixture('photo.heic'), fixture('photo.avif')].map(b64),
    );
    expect(status).toBe(200);
    const [p, heic, avif] = (json as { image_features: number[] }[]).map((r) => r.image_features);
    expect(cosine(p!, heic!)).toBeGreaterThanOrEqual(0.99);
    expect(cosine(p!, avif!)).toBeGreaterThanOrEqual(0.99);
    // Lossy, so not bit-identical: the vectors do differ.
    expect(cosine(p!, heic!)).toBeLessThan(1);
  });

  it('URLs with a misleading name and content type: sniffed from the bytes', async () => {
    served.set('/photo.jpg', fixture('photo.heic'));
    served.set('/scan.png', encodeBmp(photo, { bits: 24 }));
    const { status, json } = await score([
      `${filesUrl}/photo.jpg`,
      `${filesUrl}/scan.png`,
      b64(fixture('photo.png')),
    ]);
    expect(status).toBe(200);
    const [heic, bmp, p] = (json as { image_features: number[] }[]).map((r) => r.image_features);
    expect(cosine(heic!, p!)).toBeGreaterThanOrEqual(0.99);
    expect(cosine(bmp!, p!)).toBeGreaterThanOrEqual(0.99999);
  });
});

/** Each hostile file with the code it must get. */
function hostile(): [string, Uint8Array, string][] {
  const bmp = Buffer.from(encodeBmp(photo, { bits: 24 }));
  const huge = Buffer.from(bmp);
  huge.writeInt32LE(100_000, 18);
  huge.writeInt32LE(100_000, 22);
  const ico = Buffer.from(
    encodeIco([{ width: 0, height: 0, bits: 32, data: encodeDib(photo, { bits: 32 }, 2) }]),
  );
  ico.writeUInt32LE(0x7fff_0000, 6 + 12);
  const heic = Buffer.from(fixture('photo.heic'));
  const ispe = heic.indexOf('ispe');
  heic.writeUInt32BE(100_000, ispe + 8);
  heic.writeUInt32BE(100_000, ispe + 12);
  const ppm = Buffer.from('P6\n100000 100000\n255\n\x00\x00\x00', 'latin1');
  return [
    ['truncated BMP', bmp.subarray(0, bmp.length >> 1), 'IMAGE_DECODE_FAILED'],
    ['truncated HEIC', fixture('photo.heic').subarray(0, 20_000), 'IMAGE_DECODE_FAILED'],
    ['BMP header 100000x100000', huge, 'IMAGE_TOO_MANY_PIXELS'],
    ['PPM header 100000x100000', ppm, 'IMAGE_TOO_MANY_PIXELS'],
    ['ICO entry outside the file', ico, 'IMAGE_DECODE_FAILED'],
    ['HEIC 100000x100000', heic, 'IMAGE_TOO_MANY_PIXELS'],
  ];
}

describe('hostile files answer 400 with their own code, and the service carries on', () => {
  it('/score: each alone gets a 400 naming the row and the code; then good images still work', async () => {
    for (const [name, bytes, code] of hostile()) {
      const { status, json } = await score([b64(fixture('photo.png')), b64(bytes)]);
      expect(status, name).toBe(400);
      expect(json.error, name).toMatchObject({ code, row: 1 });
      expect(json.error.failures, name).toHaveLength(1);
    }
    const { status, json } = await score([b64(fixture('photo.heic')), b64(encodeBmp(photo, { bits: 24 }))]);
    expect(status).toBe(200);
    expect(json).toHaveLength(2);
  });

  it('/v1/embeddings takes the new formats as data URIs and refuses a hostile one with its code', async () => {
    const good = await postJson(`${stack.api.url}/v1/embeddings`, {
      model: 'dinov2-base',
      input: [
        `data:image/png;base64,${b64(fixture('photo.png'))}`,
        `data:image/heic;base64,${b64(fixture('photo.heic'))}`,
        `data:image/x-portable-pixmap;base64,${b64(encodePnm(photo, 6))}`,
      ],
    });
    expect(good.status).toBe(200);
    const [p, heic, ppm] = (good.json.data as { embedding: number[] }[]).map((d) => d.embedding);
    expect(cosine(heic!, p!)).toBeGreaterThanOrEqual(0.99);
    expect(cosine(ppm!, p!)).toBeGreaterThanOrEqual(0.99999);
    const [, bytes, code] = hostile().find(([n]) => n === 'HEIC 100000x100000')!;
    const bad = await postJson(`${stack.api.url}/v1/embeddings`, {
      model: 'dinov2-base',
      input: [`data:image/heic;base64,${b64(bytes)}`],
    });
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe(code);
  });

  it('jobs: new formats succeed per item, hostile items fail with their codes, the job completes', async () => {
    const events = new JobEvents(stack.config.QUEUE_PREFIX);
    await events.ready();
    try {
      const items = hostile();
      const body = {
        images: [
          { id: 'png', base64: b64(fixture('photo.png')) },
          { id: 'tga', base64: b64(encodeTga(photo, { type: 2, rle: true })) },
          { id: 'jp2', base64: b64(fixture('photo.jp2')) },
          ...items.map(([name, bytes]) => ({ id: name.replace(/[^A-Za-z0-9]+/g, '-'), base64: b64(bytes) })),
        ],
      };
      const submitted = await postJson(`${stack.api.url}/v1/jobs`, body);
      expect(submitted.status).toBe(202);
      // biome-ignore lint/suspicious/noExplicitAny: job status shape
      const status = (await waitJobFinal(stack.api.url, events, submitted.json.id)) as any;
      expect(status.state).toBe('partially_failed');
      expect(status.counts).toEqual({ total: 3 + items.length, succeeded: 3, failed: items.length });
      items.forEach(([name, , code], i) => {
        expect(status.items[3 + i], name).toMatchObject({ status: 'failed', error: { code } });
      });
      const res = await fetch(`${stack.api.url}/v1/jobs/${submitted.json.id}/result`);
      const result = (await res.json()) as { items: { image_features: number[] }[] };
      expect(cosine(result.items[1]!.image_features, result.items[0]!.image_features)).toBeGreaterThanOrEqual(
        0.99999,
      );
      expect(cosine(result.items[2]!.image_features, result.items[0]!.image_features)).toBeGreaterThanOrEqual(
        0.99999,
      );
    } finally {
      await events.close();
    }
  });
});
