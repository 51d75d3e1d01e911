import {
  cosine,
  loadParityReference,
  PARITY_MODEL,
  parityImages,
  parityPixelValues,
} from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../engine';
import { EmbedpoolError } from '../errors';
import { type BatchEvent, type BatchItem, MicroBatcher } from './micro-batcher';

const ref = loadParityReference();
const names = parityImages()
  .filter((i) => i.reference)
  .map((i) => i.name);
const pixels = new Map(names.map((n) => [n, parityPixelValues(n)]));
const item = (name: string): BatchItem => ({ fill: (out, offset) => out.set(pixels.get(name)!, offset) });

describe('MicroBatcher', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load({ modelPath: PARITY_MODEL, runtime: { intraOpThreads: 1 } });
  });
  afterAll(() => engine.close());

  const make = (maxBatchSize: number, batchWaitMs: number) => {
    const b = new MicroBatcher(engine, { maxBatchSize, batchWaitMs, height: 224, width: 224 });
    const batches: BatchEvent[] = [];
    b.on('batch', (e: BatchEvent) => batches.push(e));
    return { b, batches };
  };

  it('packs 16 concurrent single images into fewer than 16 runs, each answer its own', async () => {
    const { b, batches } = make(8, 5);
    const order = Array.from({ length: 16 }, (_, i) => names[i % names.length]!);
    const vectors = await Promise.all(order.map((n) => b.embed(item(n))));
    vectors.forEach((v, i) => expect(cosine(v, ref.embeddings[order[i]!]!)).toBeGreaterThan(0.99999));
    expect(batches.length).toBeLessThan(16);
    expect(batches.reduce((s, e) => s + e.size, 0)).toBe(16);
    expect(Math.max(...batches.map((e) => e.size))).toBeLessThanOrEqual(8);
  });

  it('runs a lone image at once on an idle model instead of waiting for the batch window', async () => {
    // A minute-long window: if the batcher waited for it, this test would time out.
    const { b, batches } = make(8, 60_000);
    const v = await b.embed(item(names[0]!));
    expect(cosine(v, ref.embeddings[names[0]!]!)).toBeGreaterThan(0.99999);
    expect(batches).toHaveLength(1);
  });

  it('holds a batch while more images are expected, and lets it go when they arrive', async () => {
    const { b, batches } = make(8, 60_000);
    const release = [b.expect(), b.expect()];
    let settled = false;
    const first = b.embed(item(names[0]!)).then((v) => {
      settled = true;
      return v;
    });
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    const second = b.embed(item(names[1]!));
    release[0]!();
    const third = b.embed(item(names[2]!));
    release[1]!();
    await Promise.all([first, second, third]);
    expect(batches.map((e) => e.size)).toEqual([3]);
  });

  it('sends a full batch without waiting even when more are expected', async () => {
    const { b, batches } = make(2, 60_000);
    const release = b.expect();
    await Promise.all([b.embed(item(names[0]!)), b.embed(item(names[1]!))]);
    expect(batches.map((e) => e.size)).toEqual([2]);
    release();
  });

  it('fails only the image that cannot be written into the batch', async () => {
    const { b } = make(8, 5);
    const bad: BatchItem = {
      fill: () => {
        throw new EmbedpoolError('IMAGE_DECODE_FAILED', 'broken');
      },
    };
    const results = await Promise.allSettled([
      b.embed(item(names[0]!)),
      b.embed(bad),
      b.embed(item(names[1]!)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason.code).toBe('IMAGE_DECODE_FAILED');
  });

  it('splits a 40-image burst into runs no larger than the batch size, answers in order', async () => {
    const { b, batches } = make(8, 5);
    const order = Array.from({ length: 40 }, (_, i) => names[(i * 7) % names.length]!);
    const vectors = await Promise.all(order.map((n) => b.embed(item(n))));
    vectors.forEach((v, i) => expect(cosine(v, ref.embeddings[order[i]!]!)).toBeGreaterThan(0.99999));
    expect(batches.every((e) => e.size <= 8)).toBe(true);
    expect(batches.reduce((s, e) => s + e.size, 0)).toBe(40);
  });

  it('refuses work after close and finishes what it had', async () => {
    const { b } = make(8, 5);
    const pending = b.embed(item(names[0]!));
    const closing = b.close();
    await expect(pending).resolves.toHaveLength(ref.dim);
    await closing;
    await expect(b.embed(item(names[0]!))).rejects.toMatchObject({ code: 'ENGINE_CLOSED' });
  });
});
