import { EmbedpoolError } from '@embedpool/core/errors';
import { keys, QUEUES } from '@embedpool/core/queue';
import { readyRedis } from '@embedpool/testkit';
import {
  cleanupPrefix,
  getJson,
  postJson,
  TEST_REDIS_URL,
  testConfig,
  uniquePrefix,
} from '@embedpool/testkit/api-test-kit';
import { FAKE_DIM, FAKE_MODEL, FakeWorker, fakeVector } from '@embedpool/testkit/fake-worker';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type RunningApi, startApi } from './index';
import { type OpenAiErrorBody, toOpenAiError } from './openai-schema';

const PNG_B64 = Buffer.from('\x89PNG\r\n\x1a\nnot really a png', 'latin1').toString('base64');
const IMAGES = ['https://images.example.com/a.png', PNG_B64, `data:image/png;base64,${PNG_B64}AAAA`];
const EXPECTED = [
  fakeVector({ kind: 'url', url: IMAGES[0]! }),
  fakeVector({ kind: 'base64', data: PNG_B64 }),
  fakeVector({ kind: 'base64', data: `${PNG_B64}AAAA` }),
];

interface RawEmbeddings {
  object: string;
  data: { object: string; index: number; embedding: number[] | string }[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/** The official client as an application would build it, pointed at the service; no retries in tests. */
function openai(baseURL: string, fetchImpl?: typeof fetch): OpenAI {
  return new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0, ...(fetchImpl ? { fetch: fetchImpl } : {}) });
}

function decodeFloat32(b64: string): number[] {
  const bytes = Buffer.from(b64, 'base64');
  const copy = new Uint8Array(bytes);
  return Array.from(new Float32Array(copy.buffer, 0, copy.byteLength / 4));
}

describe('POST /v1/embeddings with a worker', () => {
  const prefix = uniquePrefix('oai');
  let api: RunningApi;
  let worker: FakeWorker;
  let redis: Redis;
  let client: OpenAI;

  beforeAll(async () => {
    api = await startApi({ config: testConfig({ QUEUE_PREFIX: prefix, MAX_BODY_BYTES: 64 * 1024 }) });
    worker = new FakeWorker(TEST_REDIS_URL, prefix);
    await worker.ready();
    redis = await readyRedis(TEST_REDIS_URL);
    client = openai(`${api.url}/v1`);
  });
  afterAll(async () => {
    await api?.close();
    await worker?.close();
    redis?.disconnect();
    await cleanupPrefix(TEST_REDIS_URL, prefix);
  });

  it('answers the official client with float vectors, in input order, echoing the served model', async () => {
    const res = await client.embeddings.create({
      model: 'dinov2-base',
      input: IMAGES,
      encoding_format: 'float',
    });
    expect(res.object).toBe('list');
    expect(res.model).toBe(FAKE_MODEL);
    expect(res.usage).toEqual({ prompt_tokens: 0, total_tokens: 0 });
    expect(res.data.map((d) => [d.object, d.index])).toEqual([
      ['embedding', 0],
      ['embedding', 1],
      ['embedding', 2],
    ]);
    expect(res.data.map((d) => d.embedding)).toEqual(EXPECTED);
    // Delivered once: the result key is gone.
    expect(await redis.keys(keys.result(prefix, '*'))).toEqual([]);
  });

  it('answers base64 that decodes to exactly the float32 values of the float answer', async () => {
    const asFloat = await client.embeddings.create({
      model: 'dinov2-base',
      input: IMAGES,
      encoding_format: 'float',
    });
    const asBase64 = await client.embeddings.create({
      model: 'dinov2-base',
      input: IMAGES,
      encoding_format: 'base64',
    });
    expect(asBase64.model).toBe(FAKE_MODEL);
    expect(asBase64.data).toHaveLength(IMAGES.length);
    asBase64.data.forEach((d, i) => {
      expect(d.index).toBe(i);
      // The SDK hands an explicitly requested base64 answer over untouched.
      expect(typeof d.embedding).toBe('string');
      const b64 = d.embedding as unknown as string;
      expect(Buffer.from(b64, 'base64')).toHaveLength(FAKE_DIM * 4);
      const floats = asFloat.data[i]!.embedding;
      expect(decodeFloat32(b64)).toEqual(floats);
      // Byte for byte: the float answer's numbers are exact float32 values, little-endian here.
      expect(Buffer.from(b64, 'base64').equals(Buffer.from(new Float32Array(floats).buffer))).toBe(true);
    });
  });

  it("returns floats for the client's default, which asks the server for base64 and decodes it", async () => {
    const sent: unknown[] = [];
    const spying = openai(`${api.url}/v1`, async (url, init) => {
      sent.push(JSON.parse(String(init?.body)));
      return fetch(url, init);
    });
    const res = await spying.embeddings.create({ model: 'dinov2-base', input: IMAGES });
    expect(sent).toEqual([{ model: 'dinov2-base', input: IMAGES, encoding_format: 'base64' }]);
    expect(res.model).toBe(FAKE_MODEL);
    expect(res.data.map((d) => d.embedding)).toEqual(EXPECTED);
  });

  it('takes a single string input, and dimensions equal to the model dimension', async () => {
    const res = await client.embeddings.create({
      model: 'anything',
      input: IMAGES[0]!,
      encoding_format: 'float',
      dimensions: FAKE_DIM,
      user: 'user-1',
    });
    expect(res.data).toHaveLength(1);
    expect(res.data[0]!.embedding).toEqual(EXPECTED[0]);
  });

  it('gives each of many concurrent requests its own answer', async () => {
    const requests = Array.from({ length: 20 }, (_, i) => [`https://images.example.com/${i}.png`, PNG_B64]);
    const answers = await Promise.all(
      requests.map((input, i) =>
        client.embeddings.create({
          model: 'dinov2-base',
          input,
          ...(i % 2 === 0 ? { encoding_format: 'float' as const } : {}),
        }),
      ),
    );
    answers.forEach((res, i) => {
      const [url, b64] = requests[i]!;
      expect(res.data.map((d) => d.embedding)).toEqual([
        fakeVector({ kind: 'url', url: url! }),
        fakeVector({ kind: 'base64', data: b64! }),
      ]);
    });
  });

  it('surfaces a failing image through the client as a 400 BadRequestError naming its index', async () => {
    const input = [PNG_B64, 'https://images.example.com/fail.png', 'https://images.example.com/b.png'];
    const err = await client.embeddings.create({ model: 'dinov2-base', input }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.status).toBe(400);
    expect(e.code).toBe('URL_HTTP_STATUS');
    expect(e.param).toBe('input');
    expect(e.type).toBe('invalid_request_error');
    expect(e.message).toMatch(/input\[1\]: .*404/);
    expect(e.requestID).toMatch(/^[0-9a-f-]{36}$/);
    expect(await redis.keys(keys.result(prefix, '*'))).toEqual([]);
  });

  it('answers 400 in the OpenAI shape, with every failing index, for a failing image (raw HTTP)', async () => {
    const input = ['https://images.example.com/fail.png', PNG_B64, 'https://images.example.com/fail-too.png'];
    const res = await postJson<OpenAiErrorBody>(`${api.url}/v1/embeddings`, { model: 'm', input });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('x-should-retry')).toBe('false');
    expect(res.json.error).toEqual({
      message: expect.stringMatching(/^input\[0\]: fetch answered 404 \(fake\) \(and 1 more input\)$/),
      type: 'invalid_request_error',
      param: 'input',
      code: 'URL_HTTP_STATUS',
      failures: [
        { index: 0, code: 'URL_HTTP_STATUS', message: expect.stringContaining('404') },
        { index: 2, code: 'URL_HTTP_STATUS', message: expect.stringContaining('404') },
      ],
    });
  });

  it('answers 400 for inputs the API rejects before enqueueing anything', async () => {
    const jobsBefore = worker.jobIds.length;
    const res = await postJson<OpenAiErrorBody>(`${api.url}/v1/embeddings`, {
      model: 'm',
      input: [PNG_B64, '%%%', { url: 'x' }, 'ftp://example.com/a.png'],
    });
    expect(res.status).toBe(400);
    expect(res.json.error.message).toMatch(/^input\[1\]: /);
    expect(res.json.error.param).toBe('input');
    expect(res.json.error.failures?.map((f) => [f.index, f.code])).toEqual([
      [1, 'INVALID_BASE64'],
      [2, 'BAD_REQUEST'],
      [3, 'URL_SCHEME_NOT_ALLOWED'],
    ]);
    expect(worker.jobIds.length).toBe(jobsBefore);
  });

  it.each([
    ['no model', { input: [PNG_B64] }, 'model', /model/],
    ['an empty model', { model: ' ', input: [PNG_B64] }, 'model', /model/],
    ['no input', { model: 'm' }, 'input', /input: required/],
    ['an empty input array', { model: 'm', input: [] }, 'input', /must not be empty/],
    ['an empty input string', { model: 'm', input: '' }, 'input', /input\[0\]: image is an empty string/],
    ['an object input', { model: 'm', input: { a: 1 } }, 'input', /string or an array/],
    ['a token array', { model: 'm', input: [101, 2023, 102] }, 'input', /token arrays are not supported/],
    ['token arrays', { model: 'm', input: [[101, 2023]] }, 'input', /token arrays are not supported/],
    [
      'an unknown encoding',
      { model: 'm', input: [PNG_B64], encoding_format: 'int8' },
      'encoding_format',
      /float/,
    ],
    ['fractional dimensions', { model: 'm', input: [PNG_B64], dimensions: 1.5 }, 'dimensions', /positive/],
    ['a non-string user', { model: 'm', input: [PNG_B64], user: 7 }, 'user', /user/],
    ['a JSON array body', [PNG_B64], null, /JSON object/],
  ])('answers 400 for %s', async (_name, body, param, message) => {
    const res = await postJson<OpenAiErrorBody>(`${api.url}/v1/embeddings`, body);
    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ type: 'invalid_request_error', param });
    expect(res.json.error.code).toMatch(/^(BAD_REQUEST|IMAGE_EMPTY)$/);
    expect(res.json.error.message).toMatch(message);
  });

  it('accepts null optional fields and ignores unknown ones', async () => {
    const res = await postJson<RawEmbeddings>(`${api.url}/v1/embeddings`, {
      model: 'm',
      input: [PNG_B64],
      encoding_format: null,
      dimensions: null,
      user: null,
      extra_body_field: { anything: true },
    });
    expect(res.status).toBe(200);
    expect(res.json.data[0]!.embedding).toEqual(EXPECTED[1]);
  });

  it('answers 400 on dimensions other than the model dimension, with a clear message', async () => {
    for (const dimensions of [FAKE_DIM / 2, FAKE_DIM * 2]) {
      const res = await postJson<OpenAiErrorBody>(`${api.url}/v1/embeddings`, {
        model: 'm',
        input: [PNG_B64],
        dimensions,
      });
      expect(res.status).toBe(400);
      expect(res.json.error).toMatchObject({ param: 'dimensions', code: 'BAD_REQUEST' });
      expect(res.json.error.message).toContain(`dimensions: ${dimensions} is not supported`);
      expect(res.json.error.message).toContain(`pass ${FAKE_DIM}`);
    }
    const err = await client.embeddings
      .create({ model: 'dinov2-base', input: [PNG_B64], dimensions: 4 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).message).toMatch(/shortening/);
  });

  it('answers 413 TOO_MANY_IMAGES past MAX_IMAGES_PER_REQUEST, before enqueueing', async () => {
    const jobsBefore = worker.jobIds.length;
    const res = await postJson<OpenAiErrorBody>(`${api.url}/v1/embeddings`, {
      model: 'm',
      input: Array.from({ length: 65 }, () => 'https://images.example.com/a.png'),
    });
    expect(res.status).toBe(413);
    expect(res.json.error).toMatchObject({
      type: 'invalid_request_error',
      param: 'input',
      code: 'TOO_MANY_IMAGES',
      message: expect.stringMatching(/65 images.*at most 64/),
    });
    expect(worker.jobIds.length).toBe(jobsBefore);
  });

  it('answers 413 for a body over MAX_BODY_BYTES and 400 for malformed JSON, in the OpenAI shape', async () => {
    const big = await postJson<OpenAiErrorBody>(`${api.url}/v1/embeddings`, {
      model: 'm',
      input: ['A'.repeat(100 * 1024)],
    });
    expect(big.status).toBe(413);
    expect(big.json.error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', type: 'invalid_request_error' });
    const bad = await postJson<OpenAiErrorBody>(`${api.url}/v1/embeddings`, '{"input": [');
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatchObject({ code: 'BAD_REQUEST', param: null, message: expect.any(String) });
    const wrongType = await fetch(`${api.url}/v1/embeddings`, { method: 'POST', body: 'hello' });
    expect(wrongType.status).toBe(400);
    expect(((await wrongType.json()) as OpenAiErrorBody).error.message).toMatch(/JSON body/);
  });

  it('answers 500 server_error when the worker fails the whole job', async () => {
    const res = await postJson<OpenAiErrorBody>(`${api.url}/v1/embeddings`, {
      model: 'm',
      input: ['https://images.example.com/crash.png'],
    });
    expect(res.status).toBe(500);
    expect(res.json.error).toMatchObject({ type: 'server_error', code: 'INFERENCE_FAILED', param: null });
    expect(res.json.error.message).toMatch(/fake crash/);
    // Transient as far as the API can tell: the SDK's own retry policy applies.
    expect(res.headers.get('x-should-retry')).toBeNull();
  });

  it('answers unknown /v1 routes with a 404 in the OpenAI shape, and leaves other routes alone', async () => {
    const get = await getJson<OpenAiErrorBody>(`${api.url}/v1/embeddings`);
    expect(get.status).toBe(404);
    expect(get.json.error).toMatchObject({ type: 'invalid_request_error', code: 'NOT_FOUND', param: null });
    expect(get.json.error.message).toContain('GET /v1/embeddings');
    const other = await postJson<OpenAiErrorBody>(`${api.url}/v1/chat/completions`, {});
    expect(other.status).toBe(404);
    expect(other.json.error.type).toBe('invalid_request_error');
    const outside = await getJson<{ error: { code: string; type?: string } }>(`${api.url}/v2/embeddings`);
    expect(outside.status).toBe(404);
    expect(outside.json.error.code).toBe('NOT_FOUND');
    expect(outside.json.error.type).toBeUndefined();
  });

  it('counts embedded images and request metrics under the route', async () => {
    const text = await (await fetch(`${api.url}/metrics`)).text();
    expect(text).toMatch(
      /embedpool_http_requests_total\{route="\/v1\/embeddings",method="POST",status="200"\} \d+/,
    );
    expect(text).toMatch(/embedpool_score_image_failures_total\{code="URL_HTTP_STATUS"\} \d+/);
  });
});

describe('POST /v1/embeddings without a worker', () => {
  const prefix = uniquePrefix('oai-noworker');
  let api: RunningApi;
  let producer: Redis;
  let queue: Queue;

  beforeAll(async () => {
    api = await startApi({ config: testConfig({ QUEUE_PREFIX: prefix, REQUEST_TIMEOUT_MS: 300 }) });
    producer = await readyRedis(TEST_REDIS_URL);
    queue = new Queue(QUEUES.embed, { connection: producer, prefix });
  });
  afterAll(async () => {
    await api?.close();
    await queue?.close();
    producer?.disconnect();
    await cleanupPrefix(TEST_REDIS_URL, prefix);
  });

  it('answers 504 TIMEOUT past REQUEST_TIMEOUT_MS and removes the job it gave up on', async () => {
    const res = await postJson<OpenAiErrorBody>(`${api.url}/v1/embeddings`, { model: 'm', input: [PNG_B64] });
    expect(res.status).toBe(504);
    expect(res.json.error).toMatchObject({ type: 'server_error', code: 'TIMEOUT', param: null });
    const counts = await queue.getJobCounts();
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(0);
  });
});

describe('POST /v1/embeddings when the client goes away', () => {
  const prefix = uniquePrefix('oai-gone');
  let api: RunningApi;
  let producer: Redis;
  let queue: Queue;

  beforeAll(async () => {
    api = await startApi({ config: testConfig({ QUEUE_PREFIX: prefix, REQUEST_TIMEOUT_MS: 30_000 }) });
    producer = await readyRedis(TEST_REDIS_URL);
    queue = new Queue(QUEUES.embed, { connection: producer, prefix });
  });
  afterAll(async () => {
    await api?.close();
    await queue?.close();
    producer?.disconnect();
    await cleanupPrefix(TEST_REDIS_URL, prefix);
  });

  it('cancels the job when the client disconnects before the answer', async () => {
    const controller = new AbortController();
    const client = openai(`${api.url}/v1`);
    const request = client.embeddings
      .create({ model: 'm', input: [PNG_B64] }, { signal: controller.signal })
      .catch((err: unknown) => err);
    await vi.waitFor(async () => expect(await queue.getJobCounts('wait')).toEqual({ wait: 1 }), {
      timeout: 5_000,
    });
    controller.abort();
    expect(await request).toBeInstanceOf(OpenAI.APIUserAbortError);
    await vi.waitFor(
      async () => {
        const counts = await queue.getJobCounts();
        expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(0);
      },
      { timeout: 5_000 },
    );
  });
});

describe('toOpenAiError', () => {
  it('maps transient failures to server_error with their status, hiding internal details', () => {
    const unavailable = toOpenAiError(
      new EmbedpoolError('UNAVAILABLE', 'redis is unreachable (reconnecting)'),
    );
    expect(unavailable).toMatchObject({
      status: 503,
      permanent: false,
      body: { error: { type: 'server_error', code: 'UNAVAILABLE', param: null } },
    });
    const internal = toOpenAiError(new Error('secret host name'));
    expect(internal.status).toBe(500);
    expect(internal.body.error).toEqual({
      message: 'internal error',
      type: 'server_error',
      param: null,
      code: 'INTERNAL',
    });
  });
});
