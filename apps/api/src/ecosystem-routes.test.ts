import { createHash } from 'node:crypto';
import { QUEUES } from '@embedpool/core/queue';
import {
  cleanupPrefix,
  getJson,
  postJson,
  TEST_REDIS_URL,
  testConfig,
  uniquePrefix,
} from '@embedpool/testkit/api-test-kit';
import { FAKE_DIM, FAKE_MODEL, FakeWorker } from '@embedpool/testkit/fake-worker';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningApi, startApi } from './index';
import { looksLikeText } from './openai-schema';
import { listModels } from './routes/models';

interface ModelList {
  object: string;
  data: {
    id: string;
    object: string;
    created: number;
    owned_by: string;
    dimension: number;
    precision: string;
    random_weights: boolean;
    workers: number;
  }[];
}

describe('routes users of other servers call first', () => {
  const prefix = uniquePrefix('eco');
  let api: RunningApi;
  let worker: FakeWorker;

  beforeAll(async () => {
    api = await startApi({ config: testConfig({ QUEUE_PREFIX: prefix }) });
    worker = new FakeWorker(TEST_REDIS_URL, prefix);
    await worker.ready();
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await cleanupPrefix(TEST_REDIS_URL, prefix);
  });

  it('GET / answers Healthy as the Azure ML inference server does', async () => {
    const res = await fetch(`${api.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await res.text()).toBe('Healthy');
  });

  it('GET /docs renders /openapi.json with assets served by this server (no CDN)', async () => {
    const page = await fetch(`${api.url}/docs`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.text();
    // Every script and stylesheet is a path on this server: nothing is loaded from elsewhere.
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThanOrEqual(3);
    for (const ref of refs) {
      expect(ref.startsWith('/docs/'), ref).toBe(true);
      const asset = await fetch(`${api.url}${ref}`);
      expect(asset.status, ref).toBe(200);
      expect((await asset.arrayBuffer()).byteLength, ref).toBeGreaterThan(0);
    }
    const init = await (await fetch(`${api.url}/docs/init.js`)).text();
    expect(init).toContain("url: '/openapi.json'");
    const bundle = await (await fetch(`${api.url}/docs/assets/swagger-ui-bundle.js`)).text();
    expect(bundle).toContain('SwaggerUIBundle');
  });

  it('GET /v1/models lists what live workers serve, in OpenAI list shape', async () => {
    const before = await getJson<ModelList>(`${api.url}/v1/models`);
    expect(before.status).toBe(200);
    expect(before.json).toEqual({ object: 'list', data: [] });

    const startedAt = Date.now() - 5_000;
    await worker.heartbeat({ startedAt });
    await worker.heartbeat({
      id: 'fake-2',
      startedAt: Date.now(),
      precision: 'float16',
      randomWeights: true,
    });
    const after = await getJson<ModelList>(`${api.url}/v1/models`);
    expect(after.status).toBe(200);
    expect(after.json).toEqual({
      object: 'list',
      data: [
        {
          id: FAKE_MODEL,
          object: 'model',
          created: Math.floor(startedAt / 1000),
          owned_by: 'embedpool',
          dimension: FAKE_DIM,
          precision: 'fp32,fp16',
          random_weights: true,
          workers: 2,
        },
      ],
    });
  });

  it('POST /v1/embeddings refuses text at once, before anything is queued', async () => {
    const queue = new Queue(QUEUES.embed, { connection: { url: TEST_REDIS_URL }, prefix });
    try {
      const res = await postJson<{ error: { message: string; param: string; code: string } }>(
        `${api.url}/v1/embeddings`,
        { model: 'dinov2', input: 'a photo of a cat' },
      );
      expect(res.status).toBe(400);
      expect(res.json.error.param).toBe('input');
      expect(res.json.error.code).toBe('BAD_REQUEST');
      expect(res.json.error.message).toMatch(/^input\[0\]: is text, not an image: .*image URL/);
      const counts = await queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'prioritized');
      expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(0);
    } finally {
      await queue.close();
    }
  });
});

describe('listModels', () => {
  const w = (over: object) => ({
    id: 'w',
    host: 'h',
    pid: 1,
    model: '/m.onnx',
    modelId: 'facebook/dinov2-small',
    dim: 384,
    provider: 'cpu',
    randomWeights: false,
    precision: 'unknown' as const,
    pool: 'cpu',
    startedAt: 1_000_000,
    imagesPerSecond: 0,
    ...over,
  });

  it('groups workers by model id, names the org as owner, defaults the precision to fp32', () => {
    const out = listModels([
      w({}),
      w({ id: 'x', modelId: 'facebook/dinov2-base', dim: 768, precision: 'float16' as const }),
    ]);
    expect(out.map((m) => [m.id, m.owned_by, m.dimension, m.precision, m.workers])).toEqual([
      ['facebook/dinov2-base', 'facebook', 768, 'fp16', 1],
      ['facebook/dinov2-small', 'facebook', 384, 'fp32', 1],
    ]);
  });
});

describe('looksLikeText', () => {
  const b64 = (bytes: Buffer) => bytes.toString('base64');
  it.each([
    ['a sentence', 'a photo of a cat', true],
    ['base64 of a sentence', b64(Buffer.from('a photo of a cat, please')), true],
    ['a PNG', b64(Buffer.from('\x89PNG\r\n\x1a\n0000000000000000', 'latin1')), false],
    ['a JPEG', b64(Buffer.from([0xff, 0xd8, 0xff, 0xe0, ...Buffer.from('JFIF0000000000')])), false],
    [
      'MIME-wrapped base64 of binary',
      `${b64(createHash('sha512').update('x').digest())}\n${'A'.repeat(8)}`,
      false,
    ],
    ['a URL with spaces', 'https://example.com/a cat.png', false],
    ['a data URI', 'data:image/png;base64,iVBORw0KGgo=', false],
  ])('%s -> %s', (_name, input, text) => {
    expect(looksLikeText(input)).toBe(text);
  });
});
