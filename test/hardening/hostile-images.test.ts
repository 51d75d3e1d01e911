/**
 * Images built to hurt: a 100,000 x 100,000 PNG of a few KB (a decompression bomb), a truncated JPEG,
 * random bytes, an empty image, SVG (with a reference to a loopback URL that must never be fetched),
 * and a 50 MB base64 string. Each gets a clear 4xx naming the row (or a per-item error in a job), the
 * process's memory (API and worker share it here) stays bounded, and the next good request succeeds.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, testConfig } from '../support/stack';
import {
  call,
  fixtures,
  goodImage,
  guardNetwork,
  type LoopbackServer,
  pollJob,
  scoreBody,
  startLoopbackServer,
} from './support';

guardNetwork();

const MB = 1024 * 1024;

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** A valid PNG header claiming width x height (8-bit gray), with the first rows of zeros compressed. */
function bombPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 0, 0, 0, 0], 8); // depth 8, grayscale, deflate, adaptive filter, no interlace
  const rows = deflateSync(Buffer.alloc(40 * (width + 1)), { level: 9 });
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', rows),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

let detector: LoopbackServer;
beforeAll(async () => {
  detector = await startLoopbackServer('127.0.0.1', (_req, res) => res.end());
});
afterAll(() => detector?.close());

function hostile(): [string, string, RegExp][] {
  const jpeg = readFileSync(fixtures.find((i) => i.name === 'china.jpg')!.path);
  const svg = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="4000" height="4000">` +
      `<image href="${detector.url('/svg-href.png')}" xlink:href="${detector.url('/svg-xlink.png')}" width="4000" height="4000"/></svg>`,
  );
  return [
    ['100,000 x 100,000 PNG', bombPng(100_000, 100_000).toString('base64'), /^IMAGE_TOO_MANY_PIXELS$/],
    [
      'truncated JPEG',
      jpeg.subarray(0, Math.floor(jpeg.length / 2)).toString('base64'),
      /^IMAGE_DECODE_FAILED$/,
    ],
    ['random bytes', randomBytes(64 * 1024).toString('base64'), /^IMAGE_(UNSUPPORTED_FORMAT|DECODE_FAILED)$/],
    ['zero bytes', '', /^IMAGE_EMPTY$/],
    ['SVG (base64)', svg.toString('base64'), /^IMAGE_UNSUPPORTED_FORMAT$/],
    ['SVG (data URI)', `data:image/svg+xml;base64,${svg.toString('base64')}`, /^IMAGE_UNSUPPORTED_FORMAT$/],
  ];
}

describe('hostile images through /score and /v1/jobs', () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  const good = readFileSync(goodImage.path).toString('base64');
  const okRequest = async () => {
    const res = await call(`${stack.api.url}/score`, { body: scoreBody([good]) });
    expect(res.status).toBe(200);
    expect(res.json[0].image_features.length).toBeGreaterThan(0);
  };
  beforeAll(async () => {
    stack = await startStack(testConfig({}));
    await okRequest(); // warm: model, pools and buffers exist before any baseline
  });
  afterAll(() => stack?.stop());

  it('the bomb PNG is a few KB', () => {
    expect(bombPng(100_000, 100_000).length).toBeLessThan(16 * 1024);
  });

  it('a 50 MB base64 string: 400 IMAGE_TOO_LARGE, never decoded', async () => {
    // Built as bytes, once: the test's own copies should not be what the bound measures.
    const body = Buffer.concat([
      Buffer.from('{"input_data":{"columns":["image"],"index":[0],"data":[["'),
      Buffer.alloc(50 * MB, 'A'),
      Buffer.from('"]]}}'),
    ]);
    const res = await fetch(`${stack.api.url}/score`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    const json = (await res.json()) as { error: { code: string; row: number } };
    expect(res.status).toBe(400);
    expect(json.error).toMatchObject({ code: 'IMAGE_TOO_LARGE', row: 0 });
    await okRequest();
  });

  // The 50 MB body above costs the API a few copies of itself while it is parsed (docs/hardening.md); what
  // is measured from here is what images cost once they reach the worker.
  describe('what reaches the worker', () => {
    let rssBefore = 0;
    beforeAll(async () => {
      await okRequest();
      rssBefore = process.memoryUsage().rss;
    });

    const names = [
      '100,000 x 100,000 PNG',
      'truncated JPEG',
      'random bytes',
      'zero bytes',
      'SVG (base64)',
      'SVG (data URI)',
    ];
    it.each(names)('%s: 400 naming the row and a clear code', async (name) => {
      const [, image, code] = hostile().find(([n]) => n === name)!;
      const { status, json } = await call(`${stack.api.url}/score`, { body: scoreBody([good, image]) });
      expect(status).toBe(400);
      expect(json.error.row).toBe(1);
      expect(json.error.code).toMatch(code);
      expect(json.error.failures).toHaveLength(1);
      expect(json.error.message.length).toBeGreaterThan(10);
      await okRequest();
    });

    it('all of them in one async job: each fails alone, the good items succeed', async () => {
      const items = hostile().filter(([n]) => n !== 'zero bytes'); // the API refuses an empty item up front
      const body = {
        images: [
          { id: 'good-1', base64: good },
          ...items.map(([name, image]) => ({ id: name, base64: image.replace(/^data:[^,]*,/, '') })),
          { id: 'good-2', base64: good },
        ],
      };
      const submitted = await call(`${stack.api.url}/v1/jobs`, { body });
      expect(submitted.status).toBe(202);
      const job = await pollJob(stack.api.url, submitted.json.id);
      expect(job.state).toBe('partially_failed');
      expect(job.counts).toEqual({ total: items.length + 2, succeeded: 2, failed: items.length });
      expect(job.items[0].status).toBe('succeeded');
      expect(job.items.at(-1).status).toBe('succeeded');
      items.forEach(([, , code], i) => {
        expect(job.items[i + 1].status).toBe('failed');
        expect(job.items[i + 1].error.code).toMatch(code);
      });
    });

    it('memory stayed bounded over three more rounds of all of them, and the worker still serves', async () => {
      const all = hostile()
        .filter(([n]) => n !== 'zero bytes')
        .map(([, image]) => image);
      for (let round = 0; round < 3; round++) {
        const { status, json } = await call(`${stack.api.url}/score`, { body: scoreBody([...all, good]) });
        expect(status).toBe(400);
        expect(json.error.failures).toHaveLength(all.length);
      }
      await okRequest();
      const grown = process.memoryUsage().rss - rssBefore;
      expect(grown, `RSS grew ${Math.round(grown / MB)} MB`).toBeLessThan(300 * MB);
      expect(detector.connections, 'connections to the URLs inside the SVGs').toBe(0);
      expect((await call(`${stack.api.url}/readyz`)).status).toBe(200);
    });
  });
});
