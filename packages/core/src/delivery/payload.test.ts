import { describe, expect, it } from 'vitest';
import type { JobRecord } from '../jobs';
import { deliveryBackoffDelay, deliveryIdFor, deliveryQueueJobId, deliveryTargetFor } from './delivery-queue';
import { blobPointerPayload, goneReason, vectorsPayload } from './payload';

const record = (over: Partial<JobRecord> = {}): JobRecord => ({
  id: 'job-1',
  state: 'partially_failed',
  createdAt: 1000,
  finishedAt: 2000,
  total: 3,
  succeeded: 2,
  failed: 1,
  itemIds: ['a', 'b', 'c'],
  normalize: false,
  output: { type: 'callback', url: 'http://127.0.0.1/hook' },
  failures: [{ index: 1, code: 'IMAGE_DECODE_FAILED', message: 'bad image' }],
  model: 'dinov2-small',
  dim: 2,
  ...over,
});

describe('vectorsPayload', () => {
  it('pairs rows with item ids in order and reports failed items by index', () => {
    const vectors = new Float32Array([0.5, -1, 0, 0, 0.25, 2]);
    expect(vectorsPayload(record(), vectors)).toEqual({
      event: 'job.completed',
      jobId: 'job-1',
      state: 'partially_failed',
      model: 'dinov2-small',
      dim: 2,
      items: [
        { id: 'a', image_features: [0.5, -1] },
        { id: 'b', error: { code: 'IMAGE_DECODE_FAILED', message: 'bad image' } },
        { id: 'c', image_features: [0.25, 2] },
      ],
      createdAt: 1000,
      finishedAt: 2000,
    });
  });

  it('fails unrecoverably when the result is gone or the wrong size', () => {
    let err: unknown;
    try {
      vectorsPayload(record(), null);
    } catch (e) {
      err = e;
    }
    expect(goneReason(err)).toBe('RESULT_EXPIRED');
    try {
      vectorsPayload(record(), new Float32Array(5));
    } catch (e) {
      err = e;
    }
    expect(goneReason(err)).toBe('RESULT_INVALID');
  });

  it('needs no result when every image failed', () => {
    const failed = record({
      state: 'failed',
      succeeded: 0,
      failed: 1,
      itemIds: ['a'],
      failures: [{ index: 0, code: 'IMAGE_EMPTY', message: 'empty' }],
      error: { code: 'ALL_IMAGES_FAILED', message: 'every image failed' },
    });
    const body = vectorsPayload(failed, null);
    expect(body.items).toEqual([{ id: 'a', error: { code: 'IMAGE_EMPTY', message: 'empty' } }]);
    expect(body.error).toEqual({ code: 'ALL_IMAGES_FAILED', message: 'every image failed' });
  });
});

describe('blobPointerPayload', () => {
  it('carries the location, the counts and the failures', () => {
    const location = { type: 'blob' as const, container: 'out', blobs: ['2024/job-1/vectors.jsonl'] };
    const body = blobPointerPayload(record({ location }));
    expect(body.location).toEqual(location);
    expect(body.counts).toEqual({ total: 3, succeeded: 2, failed: 1 });
    expect(body.failures).toEqual([{ index: 1, id: 'b', code: 'IMAGE_DECODE_FAILED', message: 'bad image' }]);
  });
});

describe('delivery ids and targets', () => {
  it('derives a stable delivery id and deterministic queue ids', () => {
    expect(deliveryIdFor('job-1')).toBe(deliveryIdFor('job-1'));
    expect(deliveryIdFor('job-1')).not.toBe(deliveryIdFor('job-2'));
    expect(deliveryIdFor('job-1')).toMatch(/^dlv_[0-9a-f]{32}$/);
    expect(deliveryQueueJobId('job-1')).toBe('job-1');
    expect(deliveryQueueJobId('job-1', 2)).toBe('job-1-redrive-2');
  });

  it('maps job outputs to what is delivered', () => {
    expect(deliveryTargetFor({ type: 'callback', url: 'http://x/h' })).toEqual({
      url: 'http://x/h',
      kind: 'vectors',
    });
    expect(
      deliveryTargetFor({ type: 'blob', container: 'out', path: 'p', npy: false, callbackUrl: 'http://x/b' }),
    ).toEqual({ url: 'http://x/b', kind: 'blob-pointer' });
    expect(deliveryTargetFor({ type: 'blob', container: 'out', path: 'p', npy: false })).toBeUndefined();
    expect(deliveryTargetFor({ type: 'inline' })).toBeUndefined();
  });
});

describe('deliveryBackoffDelay', () => {
  it('doubles from the base with equal jitter, capped', () => {
    expect(deliveryBackoffDelay(1, 1000, { random: () => 0 })).toBe(500);
    expect(deliveryBackoffDelay(1, 1000, { random: () => 1 })).toBe(1000);
    expect(deliveryBackoffDelay(3, 1000, { random: () => 0 })).toBe(2000);
    expect(deliveryBackoffDelay(3, 1000, { random: () => 1 })).toBe(4000);
    expect(deliveryBackoffDelay(30, 1000, { random: () => 1 })).toBe(600_000);
    expect(deliveryBackoffDelay(30, 1000, { random: () => 0, capMs: 10_000 })).toBe(5000);
    expect(deliveryBackoffDelay(1, 1, { random: () => 0 })).toBeGreaterThanOrEqual(1);
  });
});
