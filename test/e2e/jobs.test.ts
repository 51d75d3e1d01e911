import { readFileSync } from 'node:fs';
import { cosine, loadParityReference, parityImages } from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobEvents, jobResult, postJson, startStack, testConfig, waitJobFinal } from '../support/stack';

const ref = loadParityReference();
const images = parityImages().filter((i) => i.reference);
const b64 = (path: string) => readFileSync(path).toString('base64');

describe('async jobs with inline output', () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  let events: JobEvents;
  beforeAll(async () => {
    stack = await startStack(testConfig({ MAX_BATCH_SIZE: '8' }));
    events = new JobEvents(stack.config.QUEUE_PREFIX);
    await events.ready();
  });
  afterAll(async () => {
    await events.close();
    await stack.stop();
  });

  it('accepts a job with 202, runs it, and serves per-item results as JSON and as float32', async () => {
    const body = {
      images: [
        ...images.map((img) => ({ id: img.name, base64: b64(img.path) })),
        { id: 'broken', base64: Buffer.from('nope').toString('base64') },
      ],
    };
    const submitted = await postJson(`${stack.api.url}/v1/jobs`, body);
    expect(submitted.status).toBe(202);
    expect(submitted.json.statusUrl).toBe(`/v1/jobs/${submitted.json.id}`);
    const status = await waitJobFinal(stack.api.url, events, submitted.json.id);
    expect(status.state).toBe('partially_failed');
    expect(status.counts).toEqual({ total: images.length + 1, succeeded: images.length, failed: 1 });
    expect(status.items?.at(-1)).toMatchObject({
      id: 'broken',
      status: 'failed',
      error: { code: 'IMAGE_UNSUPPORTED_FORMAT' },
    });
    expect(status.createdAt && status.startedAt && status.finishedAt).toBeTruthy();

    const result = await jobResult(stack.api.url, submitted.json.id);
    images.forEach((img, i) => {
      expect(result.items[i]?.id).toBe(img.name);
      expect(cosine(result.items[i]?.image_features ?? [], img.reference!)).toBeGreaterThan(0.999);
    });
    expect(result.items.at(-1)?.error?.code).toBe('IMAGE_UNSUPPORTED_FORMAT');

    const bin = await fetch(`${stack.api.url}/v1/jobs/${submitted.json.id}/result`, {
      headers: { accept: 'application/octet-stream' },
    });
    expect(bin.headers.get('x-embedding-dim')).toBe(String(ref.dim));
    const floats = new Float32Array(await bin.arrayBuffer());
    expect(floats.length).toBe((images.length + 1) * ref.dim);
    expect(Array.from(floats.subarray(0, ref.dim))).toEqual(
      Array.from(Float32Array.from(result.items[0]?.image_features ?? [])),
    );
  });

  it('normalizes to unit length when asked', async () => {
    const submitted = await postJson(`${stack.api.url}/v1/jobs`, {
      images: [{ base64: b64(images[0]!.path) }],
      normalize: true,
    });
    await waitJobFinal(stack.api.url, events, submitted.json.id);
    const result = await jobResult(stack.api.url, submitted.json.id);
    const v = result.items[0]?.image_features ?? [];
    expect(Math.hypot(...v)).toBeCloseTo(1, 5);
    expect(cosine(v, images[0]!.reference!)).toBeGreaterThan(0.999);
  });

  it('returns the same job for the same Idempotency-Key and body, and refuses a different body', async () => {
    const body = { images: [{ id: 'a', base64: b64(images[1]!.path) }] };
    const key = `k-${Date.now()}`;
    const first = await postJson(`${stack.api.url}/v1/jobs`, body, { 'idempotency-key': key });
    const again = await postJson(`${stack.api.url}/v1/jobs`, body, { 'idempotency-key': key });
    expect(first.status).toBe(202);
    expect(again.status).toBe(200);
    expect(again.json.id).toBe(first.json.id);
    const other = await postJson(
      `${stack.api.url}/v1/jobs`,
      { images: [{ id: 'b', base64: b64(images[2]!.path) }] },
      {
        'idempotency-key': key,
      },
    );
    expect(other.status).toBe(400);
    expect(other.json.error.message).toMatch(/Idempotency-Key/);
  });

  it('names every bad image of a submission by index and queues nothing', async () => {
    const bad = await postJson(`${stack.api.url}/v1/jobs`, {
      images: [{ url: 'ftp://x/y.png' }, { base64: b64(images[0]!.path) }, { base64: '***' }],
    });
    expect(bad.status).toBe(400);
    expect(bad.json.error.failures.map((f: { row: number }) => f.row)).toEqual([0, 2]);
    const missing = await fetch(`${stack.api.url}/v1/jobs/does-not-exist`);
    expect(missing.status).toBe(404);
  });
});

describe('cancelling a queued job', () => {
  it('DELETE moves a queued job to cancelled and no worker runs it', async () => {
    const stack = await startStack(testConfig(), { worker: false });
    try {
      const submitted = await postJson(`${stack.api.url}/v1/jobs`, {
        images: [{ base64: b64(images[0]!.path) }],
      });
      const del = await fetch(`${stack.api.url}/v1/jobs/${submitted.json.id}`, { method: 'DELETE' });
      expect(del.status).toBe(200);
      expect(((await del.json()) as { state: string }).state).toBe('cancelled');
      const again = await fetch(`${stack.api.url}/v1/jobs/${submitted.json.id}`, { method: 'DELETE' });
      expect(again.status).toBe(400);
    } finally {
      await stack.stop();
    }
  });
});
