import { once } from 'node:events';
import { createRedis, keys, QUEUES } from '@embedpool/core/queue';
import { readyRedis } from '@embedpool/testkit';
import {
  cleanupPrefix,
  type ErrorJson,
  getJson,
  postJson,
  scoreBody,
  TEST_REDIS_URL,
  testConfig,
  uniquePrefix,
} from '@embedpool/testkit/api-test-kit';
import { FAKE_DIM, FakeWorker, fakeVector } from '@embedpool/testkit/fake-worker';
import { Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningApi, startApi } from './index';

type Features = { image_features: number[] }[];

/** The test's own view of a prefix's queue and its events, on connections it closes itself. */
class TestQueue {
  private constructor(
    readonly queue: Queue,
    readonly events: QueueEvents,
    private readonly conns: Redis[],
  ) {}

  static async open(prefix: string): Promise<TestQueue> {
    const producer = createRedis(TEST_REDIS_URL, 'producer');
    const consumer = createRedis(TEST_REDIS_URL, 'consumer');
    // From the stream's current end, not '$': an event written before the first XREAD would be lost.
    await once(producer, 'ready');
    const tail = await producer.xrevrange(`${prefix}:${QUEUES.embed}:events`, '+', '-', 'COUNT', 1);
    const lastEventId = tail[0]?.[0] ?? '0-0';
    const events = new QueueEvents(QUEUES.embed, { connection: consumer, prefix, lastEventId });
    await events.waitUntilReady();
    return new TestQueue(new Queue(QUEUES.embed, { connection: producer, prefix }), events, [
      producer,
      consumer,
    ]);
  }

  async close(): Promise<void> {
    await this.events.close();
    await this.queue.close();
    for (const c of this.conns) c.disconnect();
  }
}
const PNG_B64 = Buffer.from('\x89PNG\r\n\x1a\nnot really a png', 'latin1').toString('base64');

describe('API with a worker', () => {
  const prefix = uniquePrefix('ok');
  let api: RunningApi;
  let worker: FakeWorker;
  let redis: Redis;

  beforeAll(async () => {
    api = await startApi({ config: testConfig({ QUEUE_PREFIX: prefix, MAX_BODY_BYTES: 64 * 1024 }) });
    worker = new FakeWorker(TEST_REDIS_URL, prefix);
    await worker.ready();
    redis = await readyRedis(TEST_REDIS_URL);
  });
  afterAll(async () => {
    await api?.close();
    await worker?.close();
    redis?.disconnect();
    await cleanupPrefix(TEST_REDIS_URL, prefix);
  });

  it('answers the Azure contract: one image_features per row, in input order, of the model dimension', async () => {
    const images = ['https://images.example.com/a.png', PNG_B64, `data:image/png;base64,${PNG_B64}AAAA`];
    const res = await postJson<Features>(`${api.url}/score`, scoreBody(images), { 'x-request-id': 'req-42' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('x-request-id')).toBe('req-42');
    const expected = [
      fakeVector({ kind: 'url', url: images[0]! }),
      fakeVector({ kind: 'base64', data: PNG_B64 }),
      fakeVector({ kind: 'base64', data: `${PNG_B64}AAAA` }),
    ];
    expect(res.json).toHaveLength(3);
    res.json.forEach((row, i) => {
      expect(Object.keys(row)).toEqual(['image_features']);
      expect(row.image_features).toHaveLength(FAKE_DIM);
      expect(row.image_features).toEqual(expected[i]);
    });
    // Delivered once: the result key is gone.
    expect(await redis.keys(keys.result(prefix, '*'))).toEqual([]);
  });

  it('gives each of many concurrent requests its own answer', async () => {
    const requests = Array.from({ length: 40 }, (_, i) => [
      `https://images.example.com/${i}.png`,
      `${PNG_B64}${'A'.repeat(4 * (i % 3))}`,
    ]);
    const answers = await Promise.all(
      requests.map((images) => postJson<Features>(`${api.url}/score`, scoreBody(images))),
    );
    answers.forEach((res, i) => {
      expect(res.status).toBe(200);
      const [url, b64] = requests[i]!;
      expect(res.json.map((r) => r.image_features)).toEqual([
        fakeVector({ kind: 'url', url: url! }),
        fakeVector({ kind: 'base64', data: b64! }),
      ]);
    });
  });

  it('answers 413 TOO_MANY_IMAGES past MAX_IMAGES_PER_REQUEST, before enqueueing', async () => {
    const res = await postJson<ErrorJson>(
      `${api.url}/score`,
      scoreBody(Array.from({ length: 65 }, () => PNG_B64)),
    );
    expect(res.status).toBe(413);
    expect(res.json.error.code).toBe('TOO_MANY_IMAGES');
  });

  it('answers 500 JSON when the worker fails the whole job', async () => {
    const res = await postJson<ErrorJson>(
      `${api.url}/score`,
      scoreBody(['https://images.example.com/crash.png']),
    );
    expect(res.status).toBe(500);
    expect(res.json.error.code).toBe('INFERENCE_FAILED');
    expect(res.json.error.message).toMatch(/fake crash/);
  });

  it('generates a request id when the header is missing or not sane, and uses it as the job id', async () => {
    const res = await postJson(`${api.url}/score`, scoreBody([PNG_B64]), {
      'x-request-id': 'bad id\twith tab',
    });
    expect(res.status).toBe(200);
    const id = res.headers.get('x-request-id');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(worker.jobIds).toContain(id);
    // A client-chosen id is never a job id: BullMQ would join a second request to the first one's job.
    expect(worker.jobIds).not.toContain('req-42');
  });

  it('answers 400 naming the row when the worker fails an image, and leaves no result behind', async () => {
    const images = [PNG_B64, 'https://images.example.com/fail.png', 'https://images.example.com/b.png'];
    const res = await postJson<ErrorJson>(`${api.url}/score`, scoreBody(images));
    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({
      code: 'URL_HTTP_STATUS',
      row: 1,
      failures: [{ row: 1, code: 'URL_HTTP_STATUS', message: expect.stringContaining('404') }],
    });
    expect(res.json.error.message).toMatch(/^row 1: /);
    expect(await redis.keys(keys.result(prefix, '*'))).toEqual([]);
  });

  it('answers 400 for rows the API rejects before enqueueing anything', async () => {
    const res = await postJson<ErrorJson>(`${api.url}/score`, {
      input_data: {
        columns: ['image', 'id'],
        data: [
          [PNG_B64, 1],
          ['%%%', 2],
          [7, 3],
        ],
      },
    });
    expect(res.status).toBe(400);
    expect(res.json.error.row).toBe(1);
    expect(res.json.error.failures?.map((f) => [f.row, f.code])).toEqual([
      [1, 'INVALID_BASE64'],
      [2, 'BAD_REQUEST'],
    ]);
    const missing = await postJson<ErrorJson>(`${api.url}/score`, {
      input_data: { columns: ['x'], data: [['a']] },
    });
    expect(missing.status).toBe(400);
    expect(missing.json.error.code).toBe('BAD_REQUEST');
  });

  it('answers 413 JSON for a body over MAX_BODY_BYTES', async () => {
    const res = await postJson<ErrorJson>(`${api.url}/score`, scoreBody(['A'.repeat(100 * 1024)]));
    expect(res.status).toBe(413);
    expect(res.json.error.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('reads bodies with long base64 values as express.json does (json-body.ts): errors and charsets', async () => {
    const long = 'QUJD'.repeat(2048);
    const cut = await postJson<ErrorJson>(`${api.url}/score`, `{"input_data": {"data": [["${long}"]]`);
    expect(cut.status).toBe(400);
    expect(cut.json.error.code).toBe('BAD_REQUEST');
    const latin1 = await fetch(`${api.url}/score`, {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=iso-8859-1' },
      body: JSON.stringify(scoreBody([long])),
    });
    expect(latin1.status).toBe(415);
    expect(((await latin1.json()) as ErrorJson).error.code).toBe('BAD_REQUEST');
    const utf8 = await fetch(`${api.url}/score`, {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset="UTF-8"' },
      body: `{"input_data": {"columns": ["image"], "data": [["${long}"], [{"x": 1}]]}}`,
    });
    expect(utf8.status).toBe(400);
    expect(((await utf8.json()) as ErrorJson).error.message).toMatch(/row 1/);
  });

  it('answers 400 JSON for malformed JSON, and 404 JSON for an unknown route', async () => {
    const bad = await postJson<ErrorJson>(`${api.url}/score`, '{"input_data": [');
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe('BAD_REQUEST');
    const missing = await getJson<ErrorJson>(`${api.url}/nope`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toMatch(/^application\/json/);
    expect(missing.json.error.code).toBe('NOT_FOUND');
    const badPath = await getJson<ErrorJson>(`${api.url}/score%E0%A4%A`);
    expect(badPath.status).toBeLessThan(500);
    expect(badPath.json.error.code).toMatch(/^(BAD_REQUEST|NOT_FOUND)$/);
    const wrongType = await fetch(`${api.url}/score`, { method: 'POST', body: 'hello' });
    expect(wrongType.status).toBe(400);
    expect(((await wrongType.json()) as ErrorJson).error.code).toBe('BAD_REQUEST');
  });

  it('healthz is 200; readyz is 503 without a worker heartbeat and 200 with one', async () => {
    const health = await getJson<{ status: string }>(`${api.url}/healthz`);
    expect(health.status).toBe(200);
    expect(health.json).toEqual({ status: 'ok' });

    const before = await getJson<{ status: string; reason: string }>(`${api.url}/readyz`);
    expect(before.status).toBe(503);
    expect(before.json).toMatchObject({
      status: 'unavailable',
      reason: expect.stringMatching(/no live worker/),
    });

    await worker.heartbeat();
    const after = await getJson<{ status: string; workers: unknown[]; warning?: string }>(
      `${api.url}/readyz`,
    );
    expect(after.status).toBe(200);
    expect(after.json.status).toBe('ok');
    expect(after.json.warning).toBeUndefined();
    expect(after.json.workers).toEqual([
      expect.objectContaining({ model: 'fake.onnx', dim: FAKE_DIM, provider: 'cpu' }),
    ]);

    await worker.heartbeat({ randomWeights: true });
    const random = await getJson<{ status: string; warning?: string }>(`${api.url}/readyz`);
    expect(random.status).toBe(200);
    expect(random.json.warning).toMatch(/RANDOM WEIGHTS.*MEAN NOTHING/);

    // The precision a worker publishes (int8 after `embedpool model quantize`) shows per worker.
    await worker.heartbeat({ precision: 'int8' });
    const int8 = await getJson<{ workers: { precision: string }[] }>(`${api.url}/readyz`);
    expect(int8.json.workers.map((w) => w.precision)).toEqual(['int8']);
  });

  it('exposes prometheus metrics, including its request counters', async () => {
    const res = await fetch(`${api.url}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/embedpool_http_requests_total\{route="\/score",method="POST",status="200"\} \d+/);
    expect(text).toContain('embedpool_http_request_duration_seconds_bucket');
    expect(text).toMatch(/embedpool_score_images_total \d+/);
    expect(text).toContain('process_cpu_user_seconds_total');
  });
});

describe('API without a worker', () => {
  const prefix = uniquePrefix('noworker');
  let api: RunningApi;
  let queue: TestQueue;

  beforeAll(async () => {
    api = await startApi({ config: testConfig({ QUEUE_PREFIX: prefix, REQUEST_TIMEOUT_MS: 300 }) });
    queue = await TestQueue.open(prefix);
  });
  afterAll(async () => {
    await api?.close();
    await queue?.close();
    await cleanupPrefix(TEST_REDIS_URL, prefix);
  });

  it('answers 504 TIMEOUT past REQUEST_TIMEOUT_MS and removes the job it gave up on', async () => {
    const res = await postJson<ErrorJson>(`${api.url}/score`, scoreBody([PNG_B64]));
    expect(res.status).toBe(504);
    expect(res.json.error.code).toBe('TIMEOUT');
    const counts = await queue.queue.getJobCounts();
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(0);
  });
});

describe('API when the client goes away', () => {
  const prefix = uniquePrefix('gone');
  let api: RunningApi;
  let queue: TestQueue;

  beforeAll(async () => {
    api = await startApi({ config: testConfig({ QUEUE_PREFIX: prefix, REQUEST_TIMEOUT_MS: 30_000 }) });
    queue = await TestQueue.open(prefix);
  });
  afterAll(async () => {
    await api?.close();
    await queue?.close();
    await cleanupPrefix(TEST_REDIS_URL, prefix);
  });

  it('cancels the job when the client disconnects before the answer', async () => {
    const client = new AbortController();
    const { events } = queue;
    const added = once(events, 'waiting') as Promise<[{ jobId: string }]>;
    const request = fetch(`${api.url}/score`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(scoreBody([PNG_B64])),
      signal: client.signal,
    }).catch((err: unknown) => err);
    const [{ jobId }] = await added;
    const removed = new Promise<void>((resolve) => {
      events.on('removed', (e: { jobId: string }) => {
        if (e.jobId === jobId) resolve();
      });
    });
    client.abort();
    expect(await request).toMatchObject({ name: 'AbortError' });
    await removed;
    expect(await queue.queue.getJob(jobId)).toBeUndefined();
  });
});

describe('API shutdown', () => {
  const prefix = uniquePrefix('close');
  let api: RunningApi;
  let worker: FakeWorker;

  beforeAll(async () => {
    api = await startApi({ config: testConfig({ QUEUE_PREFIX: prefix }) });
    worker = new FakeWorker(TEST_REDIS_URL, prefix);
    await worker.ready();
  });
  afterAll(async () => {
    await api?.close();
    await worker?.close();
    await cleanupPrefix(TEST_REDIS_URL, prefix);
  });

  it('finishes a request in flight before closing, and refuses new connections', async () => {
    let release = () => {};
    worker.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const active = once(worker.worker, 'active');
    const inFlight = postJson<Features>(
      `${api.url}/score`,
      scoreBody(['https://images.example.com/slow.png']),
    );
    await active;
    const closed = api.close();
    // The listening socket goes first: a new connection is refused while the old request is still running.
    await expect(fetch(`${api.url}/healthz`)).rejects.toThrow();
    release();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(res.json).toHaveLength(1);
    await closed;
  });
});
