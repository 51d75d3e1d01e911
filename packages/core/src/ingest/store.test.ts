import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis } from '../queue/connection';
import { ingestKeys, newIngestionId, outputKey } from './names';
import { type BlobFailure, createIngestionRequestSchema, type IngestionRecord } from './schemas';
import { IngestionStore } from './store';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const request = createIngestionRequestSchema.parse({
  source: { container: 'photos' },
  output: { container: 'vectors', prefix: 'v1' },
});
const fail = (name: string): BlobFailure => ({
  name,
  etag: 'e',
  size: 1,
  code: 'IMAGE_DECODE_FAILED',
  message: 'no',
  permanent: true,
  at: 1,
});
const ckpt = (page: number, seq: number) => ({ page, seq, buffer: [], indexOffset: 0 });

describe('IngestionStore against Redis', () => {
  const prefix = `t-ingest-${randomUUID().slice(0, 8)}`;
  let redis: Redis;
  let store: IngestionStore;
  beforeAll(() => {
    redis = createRedis(REDIS_URL, 'consumer');
    store = new IngestionStore(redis, prefix, 600);
  });
  afterAll(async () => {
    const left = await redis.keys(`${prefix}:*`);
    if (left.length) await redis.del(...left);
    redis.disconnect();
  });

  async function fresh(key = outputKey('vectors', randomUUID())): Promise<IngestionRecord> {
    const id = newIngestionId();
    expect(await store.create({ id, request, outputKey: key, createdAt: Date.now() })).toEqual({
      created: true,
    });
    await store.start(id, { run: 1, model: 'm', dim: 4 });
    return (await store.get(id))!;
  }

  it('locks an output to one ingestion at a time, and frees a lock whose holder is gone', async () => {
    const key = outputKey('vectors', 'locked');
    const a = await fresh(key);
    expect(a.state).toBe('running');
    const b = newIngestionId();
    expect(await store.create({ id: b, request, outputKey: key, createdAt: Date.now() })).toEqual({
      created: false,
      holder: a.id,
    });
    await redis.del(ingestKeys.record(prefix, a.id));
    expect(await store.create({ id: b, request, outputKey: key, createdAt: Date.now() })).toEqual({
      created: true,
    });
  });

  it('counts a planner page once: a replayed page is refused and changes nothing', async () => {
    const r = await fresh();
    const page = {
      round: 0,
      page: 1,
      checkpoint: ckpt(1, 2),
      planned: 2,
      discovered: 10,
      skipped: 3,
      queued: 7,
    };
    expect(await store.checkpoint(r, page)).toEqual({ status: 'ok', complete: false });
    expect(await store.checkpoint(r, page)).toEqual({ status: 'conflict', complete: false });
    const after = (await store.get(r.id))!;
    expect(after).toMatchObject({ discovered: 10, skipped: 3, queued: 7, planned: 2 });
    expect(after.checkpoint).toEqual(ckpt(1, 2));
  });

  it('counts a chunk once, completes the round with the last one, and wakes a parked planner', async () => {
    const r = await fresh();
    await store.checkpoint(r, {
      round: 0,
      page: 1,
      checkpoint: ckpt(1, 4),
      planned: 4,
      discovered: 8,
      queued: 8,
    });
    expect(await store.park(r.id, 2)).toBe(true);
    const outcome = (seq: number, failures: BlobFailure[] = []) => ({
      round: 0,
      seq,
      blobs: 2,
      done: 2 - failures.length,
      bytes: 10,
      written: true,
      cancelled: false,
      failures,
      wakeBelow: 2,
      chunk: `c${seq}`,
    });
    expect(await store.commitChunk(r, outcome(0))).toEqual({ status: 'ok', complete: false, wake: false });
    expect(await store.commitChunk(r, outcome(0))).toEqual({ status: 'dup', complete: false, wake: false });
    expect(await store.commitChunk(r, outcome(1, [fail('x')]))).toEqual({
      status: 'ok',
      complete: false,
      wake: true,
    });
    await store.checkpoint(r, { round: 0, page: 2, checkpoint: ckpt(2, 4), planned: 4, listingDone: true });
    await store.commitChunk(r, outcome(2));
    expect((await store.commitChunk(r, outcome(3))).complete).toBe(true);
    const after = (await store.get(r.id))!;
    expect(after).toMatchObject({
      state: 'finalizing',
      done: 7,
      failed: 1,
      queued: 0,
      committed: 4,
      bytes: 40,
    });
    expect(await store.writtenChunks(r.id, 0)).toEqual([0, 1, 2, 3]);
    expect(await store.recentDone(r.id)).toBe(7);
    expect((await store.failures(r.id, { limit: 10 })).map((f) => f.name)).toEqual(['x']);

    expect(await store.finish(after, { state: 'partially_failed', manifest: 'v1/_manifest.json' })).toBe(
      'ok',
    );
    expect(await redis.ttl(ingestKeys.record(prefix, r.id))).toBeGreaterThan(0);
    expect(await redis.exists(ingestKeys.outputLock(prefix, r.outputKey))).toBe(0);
  });

  it('moves failures into a retry round, and puts back the ones a cancelled retry did not queue', async () => {
    const r = await fresh();
    await store.checkpoint(r, {
      round: 0,
      page: 1,
      checkpoint: ckpt(1, 1),
      planned: 1,
      discovered: 5,
      queued: 5,
      listingDone: true,
    });
    await store.commitChunk(r, {
      round: 0,
      seq: 0,
      blobs: 5,
      done: 1,
      bytes: 1,
      written: true,
      cancelled: false,
      failures: ['a', 'b', 'c', 'd'].map(fail),
      wakeBelow: 1,
      chunk: 'c0',
    });
    const done = (await store.get(r.id))!;
    await store.finish(done, { state: 'partially_failed' });
    const retry = await store.startRetry((await store.get(r.id))!, 600);
    expect(retry).toEqual({ status: 'ok', round: 1, blobs: 4 });
    let now = (await store.get(r.id))!;
    expect(now).toMatchObject({ state: 'running', round: 1, failed: 0, queued: 4, listingDone: false });
    expect(await redis.ttl(ingestKeys.record(prefix, r.id))).toBe(-1);
    expect((await store.retryPage(r.id, 1, undefined, 2)).map((f) => f.name)).toEqual(['a', 'b']);
    expect((await store.retryPage(r.id, 1, 'b', 2)).map((f) => f.name)).toEqual(['c', 'd']);
    // Queued a and b, then cancelled: c and d go back to the failures.
    await store.checkpoint(now, {
      round: 1,
      page: 1,
      checkpoint: { page: 1, token: 'b', seq: 1, buffer: [], indexOffset: 0 },
      planned: 1,
    });
    await store.checkpoint(now, {
      round: 1,
      page: 2,
      checkpoint: { page: 2, token: 'b', seq: 1, buffer: [], indexOffset: 0 },
      planned: 1,
      listingDone: true,
      restoreFrom: { name: 'b' },
    });
    now = (await store.get(r.id))!;
    expect(now).toMatchObject({ failed: 2, queued: 2 });
    expect((await store.failures(r.id, { limit: 10 })).map((f) => [f.name, f.code])).toEqual([
      ['c', 'IMAGE_DECODE_FAILED'],
      ['d', 'IMAGE_DECODE_FAILED'],
    ]);
    expect(await redis.exists(ingestKeys.retrySnapshot(prefix, r.id, 1))).toBe(0);
  });

  it('lists ingestions newest first, page by page, dropping expired ones', async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await fresh()).id);
    const first = await store.list({ limit: 2 });
    expect(first.items).toHaveLength(2);
    expect(first.items[0]!.id > first.items[1]!.id).toBe(true);
    await redis.del(ingestKeys.record(prefix, ids[0]!));
    const all = await store.list({ limit: 100 });
    expect(all.items.map((i) => i.id)).not.toContain(ids[0]);
    expect(await redis.zscore(ingestKeys.all(prefix), ids[0]!)).toBeNull();
  });

  it('a planning failure before the start still completes the round: queued -> finalizing', async () => {
    const id = newIngestionId();
    const key = outputKey('vectors', randomUUID());
    await store.create({ id, request, outputKey: key, createdAt: Date.now() });
    const r = (await store.get(id))!;
    expect(r.state).toBe('queued');
    const error = { code: 'OUTPUT_MODEL_MISMATCH', message: 'other model' };
    expect(
      await store.checkpoint(r, {
        round: 0,
        page: 1,
        checkpoint: ckpt(1, 0),
        planned: 0,
        listingDone: true,
        error,
      }),
    ).toEqual({ status: 'ok', complete: true });
    const now = (await store.get(id))!;
    expect(now).toMatchObject({ state: 'finalizing', error });
    expect(await store.finish(now, { state: 'failed', error })).toBe('ok');
    expect((await store.get(id))!.state).toBe('failed');
    // The output is free again.
    expect(await redis.get(ingestKeys.outputLock(prefix, key))).toBeNull();
  });

  it('cancel works in every state that is not final; a cancel during finalizing ends cancelled', async () => {
    const r = await fresh();
    expect(await store.requestCancel(r.id)).toBe('ok');
    expect((await store.get(r.id))!.state).toBe('cancelling');
    expect(await store.requestCancel(r.id)).toBe('ok');

    const f = await fresh();
    await store.checkpoint(f, { round: 0, page: 1, checkpoint: ckpt(1, 0), planned: 0, listingDone: true });
    expect((await store.get(f.id))!.state).toBe('finalizing');
    expect(await store.requestCancel(f.id)).toBe('ok');
    const during = (await store.get(f.id))!;
    expect(during).toMatchObject({ state: 'finalizing', cancelRequested: true });
    expect(await store.finish(during, { state: 'completed' })).toBe('ok');
    expect((await store.get(f.id))!.state).toBe('cancelled');
    expect(await store.requestCancel(f.id)).toBe('cancelled');
  });

  it('abort stops a running ingestion with its error (it then ends failed); retrying notes clear on progress', async () => {
    const r = await fresh();
    await store.noteRetry(r.id, {
      step: 'chunk',
      code: 'STORAGE_ServerBusy',
      message: 'busy',
      attempt: 1,
      attempts: 3,
      at: 1,
    });
    expect((await store.get(r.id))!.retrying).toMatchObject({ step: 'chunk', attempt: 1 });
    await store.checkpoint(r, { round: 0, page: 1, checkpoint: ckpt(1, 0), planned: 0 });
    expect((await store.get(r.id))!.retrying).toBeUndefined();

    const error = { code: 'STORAGE_ContainerNotFound', message: 'gone' };
    expect(await store.abort(r.id, error)).toBe('running');
    const stopped = (await store.get(r.id))!;
    expect(stopped).toMatchObject({ state: 'cancelling', cancelRequested: false, error });
    // A second error does not replace the first.
    await store.abort(r.id, { code: 'OTHER', message: 'x' });
    expect((await store.get(r.id))!.error).toEqual(error);
  });

  it('planning failures of this run (bad manifest lines) count as failed, not carried', async () => {
    const r = await fresh();
    await store.checkpoint(r, {
      round: 0,
      page: 1,
      checkpoint: ckpt(1, 0),
      planned: 0,
      discovered: 3,
      carried: [fail('a')],
      failures: [fail('b'), fail('c')],
    });
    expect((await store.get(r.id))!).toMatchObject({ failed: 3, carried: 1, discovered: 3 });
  });
});
