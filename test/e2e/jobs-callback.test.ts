import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cosine, parityImages } from '@embedpool/testkit';
import { startDeliveryWorker } from '@embedpool/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobEvents, jobStatus, postJson, startStack, testConfig } from '../support/stack';

const SECRET = 'test-secret-0123456789abcdef';
const images = parityImages().filter((i) => i.reference);
const b64 = (path: string) => readFileSync(path).toString('base64');

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
  status: number;
}

/** A webhook receiver on loopback whose answer is decided per request. */
function receiver(answer: (n: number) => number) {
  const got: Received[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      const status = answer(got.length + 1);
      got.push({ headers: req.headers, body, status });
      res.writeHead(status).end();
      for (const w of waiters.filter((w) => got.length >= w.n)) w.resolve();
    });
  });
  return {
    server,
    got,
    /** Resolves once n requests have arrived. */
    requests: (n: number) =>
      new Promise<void>((resolve) => (got.length >= n ? resolve() : waiters.push({ n, resolve }))),
    url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
  };
}

/** The documented scheme, recomputed here: HMAC-SHA256 over `${t}.${body}`, header `t=<t>,v1=<hex>`. */
function verify(r: Received): boolean {
  const header = String(r.headers['embedpool-signature']);
  const t = /t=(\d+)/.exec(header)![1];
  const v1 = /v1=([0-9a-f]+)/.exec(header)![1];
  return createHmac('sha256', SECRET).update(`${t}.${r.body}`).digest('hex') === v1;
}

describe('async jobs delivered to a signed callback', () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  let delivery: Awaited<ReturnType<typeof startDeliveryWorker>>;
  let events: JobEvents;
  beforeAll(async () => {
    const config = testConfig({
      CALLBACK_SECRET: SECRET,
      CALLBACK_ATTEMPTS: '4',
      CALLBACK_BACKOFF_MS: '20',
      FETCH_ALLOW: '127.0.0.0/8',
    });
    stack = await startStack(config);
    // As a worker process runs it: on the embed worker's Redis client and callback policy (apps/worker/src/deps.ts).
    delivery = await startDeliveryWorker({ config, deps: stack.worker!.deps });
    events = new JobEvents(config.QUEUE_PREFIX);
    await events.ready();
  });
  afterAll(async () => {
    await events.close();
    await delivery.close();
    await stack.stop();
  });

  it('retries a receiver that fails three times and lands exactly one accepted, verifiable delivery', async () => {
    const hook = receiver((n) => (n <= 3 ? 500 : 204));
    await new Promise<void>((r) => hook.server.listen(0, '127.0.0.1', r));
    try {
      const submitted = await postJson(`${stack.api.url}/v1/jobs`, {
        images: images.slice(0, 3).map((img) => ({ id: img.name, base64: b64(img.path) })),
        output: { type: 'callback', url: hook.url() },
      });
      expect(submitted.status).toBe(202);
      await hook.requests(4);
      await waitDelivery(stack.api.url, submitted.json.id, 'delivered');
      expect(hook.got.map((g) => g.status)).toEqual([500, 500, 500, 204]);
      expect(hook.got.every(verify)).toBe(true);
      expect(new Set(hook.got.map((g) => g.headers['embedpool-delivery-id'])).size).toBe(1);
      const accepted = JSON.parse(hook.got[3]!.body);
      expect(accepted.jobId).toBe(submitted.json.id);
      accepted.items.forEach((item: { id: string; image_features: number[] }, i: number) => {
        expect(item.id).toBe(images[i]!.name);
        expect(cosine(item.image_features, images[i]!.reference!)).toBeGreaterThan(0.999);
      });
      const job = await jobStatus(stack.api.url, submitted.json.id);
      expect(job.state).toBe('completed');
      expect(job.delivery).toMatchObject({ state: 'delivered', attempts: 4 });
    } finally {
      await new Promise((r) => hook.server.close(r));
    }
  });

  it('dead-letters a receiver that always fails, shows it on the job, and redrives it once it recovers', async () => {
    let up = false;
    const hook = receiver(() => (up ? 200 : 503));
    await new Promise<void>((r) => hook.server.listen(0, '127.0.0.1', r));
    try {
      const submitted = await postJson(`${stack.api.url}/v1/jobs`, {
        images: [{ id: 'one', base64: b64(images[0]!.path) }],
        output: { type: 'callback', url: hook.url() },
      });
      await hook.requests(4);
      const dead = await waitDelivery(stack.api.url, submitted.json.id, 'dead');
      expect(dead.delivery).toMatchObject({ state: 'dead', lastStatus: 503, attempts: 4 });
      expect(await delivery.registry.metrics()).toMatch(/embedpool_callback_dead_letters 1/);

      up = true;
      const redrive = await fetch(`${stack.api.url}/v1/jobs/${submitted.json.id}/callback/redrive`, {
        method: 'POST',
      });
      expect(redrive.status).toBe(202);
      await hook.requests(5);
      await waitDelivery(stack.api.url, submitted.json.id, 'delivered');
      expect(hook.got.filter((g) => g.status === 200)).toHaveLength(1);
      expect(new Set(hook.got.map((g) => g.headers['embedpool-delivery-id'])).size).toBe(1);
      const again = await fetch(`${stack.api.url}/v1/jobs/${submitted.json.id}/callback/redrive`, {
        method: 'POST',
      });
      expect(again.status).toBe(400);
    } finally {
      await new Promise((r) => hook.server.close(r));
    }
  });

  it('refuses callback jobs on a deployment without CALLBACK_SECRET', async () => {
    const plain = await startStack(testConfig(), { worker: false });
    try {
      const res = await postJson(`${plain.api.url}/v1/jobs`, {
        images: [{ base64: b64(images[0]!.path) }],
        output: { type: 'callback', url: 'http://127.0.0.1:1/hook' },
      });
      expect(res.status).toBe(400);
      expect(res.json.error.message).toMatch(/CALLBACK_SECRET/);
    } finally {
      await plain.stop();
    }
  });

  /** The record's delivery state is written by the delivery worker after the receiver answered. */
  async function waitDelivery(url: string, id: string, want: string) {
    for (let i = 0; i < 100; i++) {
      const job = await jobStatus(url, id);
      if (job.delivery?.state === want) return job;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`delivery never reached ${want}`);
  }
});
