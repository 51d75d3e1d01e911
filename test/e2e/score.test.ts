import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startApi } from '@embedpool/api';
import { type Config, loadConfig } from '@embedpool/core/config';
import { DINOV2_PREPROCESSOR_CONFIG } from '@embedpool/core/preprocess';
import { cosine, loadParityReference, PARITY_MODEL, parityImages } from '@embedpool/testkit';
import { startWorker } from '@embedpool/worker';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ref = loadParityReference();
const all = parityImages();
const compared = all.filter((i) => i.reference);
const b64 = (path: string) => readFileSync(path).toString('base64');
const parityModel = {
  path: PARITY_MODEL,
  modelId: 'parity',
  randomWeights: false,
  preprocessor: DINOV2_PREPROCESSOR_CONFIG,
};

function azureBody(images: string[], extraColumns = false) {
  return {
    input_data: {
      columns: extraColumns ? ['id', 'image'] : ['image'],
      index: images.map((_, i) => i),
      data: images.map((img, i) => (extraColumns ? [`row-${i}`, img] : [img])),
    },
  };
}

async function post(url: string, body: unknown) {
  const res = await fetch(`${url}/score`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: response shapes differ per test (array or error)
  return { status: res.status, json: (await res.json()) as any };
}

/** API + worker in this process, sharing one registry, on a queue prefix of the test's own. */
async function startStack(env: Record<string, string>) {
  const prefix = `{t-e2e-${randomUUID().slice(0, 8)}}`;
  const config: Config = loadConfig({
    REDIS_URL,
    QUEUE_PREFIX: prefix,
    PORT: '0',
    LOG_LEVEL: 'silent',
    ...env,
  });
  const registry = new Registry();
  const worker = await startWorker({ config, registry, model: parityModel });
  const api = await startApi({ config, registry });
  return {
    prefix,
    api,
    worker,
    registry,
    async stop() {
      await api.close();
      await worker.close();
      const redis = new Redis(REDIS_URL);
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
    },
  };
}

describe('/score end to end: API -> Redis -> worker -> answer', () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  let images: Server;
  let imagesUrl: string;

  beforeAll(async () => {
    stack = await startStack({ MAX_BATCH_SIZE: '8', FETCH_ALLOW: '127.0.0.0/8' });
    images = createServer((req, res) => {
      const img = all.find((i) => req.url === `/${i.name}`);
      if (!img) return res.writeHead(404).end();
      res.writeHead(200).end(readFileSync(img.path));
    });
    await new Promise<void>((r) => images.listen(0, '127.0.0.1', r));
    imagesUrl = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await stack.stop();
    await new Promise((r) => images.close(r));
  });

  const expectReference = (features: number[][], order = compared) => {
    expect(features).toHaveLength(order.length);
    features.forEach((f, i) => {
      expect(f).toHaveLength(ref.dim);
      expect(cosine(f, order[i]!.reference!)).toBeGreaterThan(0.999);
    });
  };

  it('answers the reference vectors for fixture images sent as base64', async () => {
    const { status, json } = await post(stack.api.url, azureBody(compared.map((i) => b64(i.path))));
    expect(status).toBe(200);
    expectReference(json.map((r: { image_features: number[] }) => r.image_features));
  });

  it('answers the reference vectors for data URIs, with extra columns ignored', async () => {
    const body = azureBody(
      compared.map((i) => `data:image/${i.name.split('.').pop()};base64,${b64(i.path)}`),
      true,
    );
    const { status, json } = await post(stack.api.url, body);
    expect(status).toBe(200);
    expectReference(json.map((r: { image_features: number[] }) => r.image_features));
  });

  it('embeds the decode-only CMYK image too', async () => {
    const cmyk = all.find((i) => !i.reference)!;
    const { status, json } = await post(stack.api.url, azureBody([b64(cmyk.path)]));
    expect(status).toBe(200);
    expect(json[0].image_features).toHaveLength(ref.dim);
    expect(json[0].image_features.every(Number.isFinite)).toBe(true);
  });

  it('answers the reference vectors for URLs on a loopback server the config allows', async () => {
    const { status, json } = await post(
      stack.api.url,
      azureBody(compared.map((i) => `${imagesUrl}/${i.name}`)),
    );
    expect(status).toBe(200);
    expectReference(json.map((r: { image_features: number[] }) => r.image_features));
  });

  it('answers a 40-image request in order with MAX_BATCH_SIZE=8', async () => {
    const order = Array.from({ length: 40 }, (_, i) => compared[(i * 3) % compared.length]!);
    const { status, json } = await post(stack.api.url, azureBody(order.map((i) => b64(i.path))));
    expect(status).toBe(200);
    expectReference(
      json.map((r: { image_features: number[] }) => r.image_features),
      order,
    );
  });

  it('answers 16 concurrent single-image requests in fewer than 16 model runs', async () => {
    const runs = async () => (await stack.worker.metrics.modelRuns.get()).values[0]?.value ?? 0;
    const before = await runs();
    const order = Array.from({ length: 16 }, (_, i) => compared[i % compared.length]!);
    const answers = await Promise.all(order.map((img) => post(stack.api.url, azureBody([b64(img.path)]))));
    answers.forEach((a, i) => {
      expect(a.status).toBe(200);
      expect(cosine(a.json[0].image_features, order[i]!.reference!)).toBeGreaterThan(0.999);
    });
    const used = (await runs()) - before;
    expect(used).toBeGreaterThan(0);
    expect(used).toBeLessThan(16);
    const metrics = await (await fetch(`${stack.api.url}/metrics`)).text();
    expect(metrics).toMatch(/embedpool_batch_size_count \d+/);
  });

  it('names the corrupt row of a mixed request with 400, and the next good request succeeds', async () => {
    const good = b64(compared[0]!.path);
    const corrupt = readFileSync(compared[1]!.path).subarray(0, 2000).toString('base64');
    const bad = await post(stack.api.url, azureBody([good, corrupt, good]));
    expect(bad.status).toBe(400);
    expect(bad.json.error.row).toBe(1);
    expect(bad.json.error.code).toMatch(/^IMAGE_/);
    expect(bad.json.error.message).toBeTruthy();
    const ok = await post(stack.api.url, azureBody([good]));
    expect(ok.status).toBe(200);
  });
});

describe('/score under the default URL policy', () => {
  it('refuses a loopback URL with a clear 400 naming the rule, and the server sees no connection', async () => {
    let connections = 0;
    const server = createServer((_req, res) => res.end('x'));
    server.on('connection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${compared[0]!.name}`;
    const stack = await startStack({});
    try {
      const { status, json } = await post(stack.api.url, azureBody([url]));
      expect(status).toBe(400);
      expect(json.error.row).toBe(0);
      expect(json.error.code).toBe('URL_ADDRESS_NOT_ALLOWED');
      expect(json.error.message).toMatch(/loopback/);
      expect(connections).toBe(0);
    } finally {
      await stack.stop();
      await new Promise((r) => server.close(r));
    }
  });
});
