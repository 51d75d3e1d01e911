import { once } from 'node:events';
import { hostname } from 'node:os';
import {
  createRedis,
  heartbeat,
  type ImageRef,
  InlineReader,
  type ItemFailure,
  QUEUES,
  type ScoreJobData,
  type ScoreResult,
  type WorkerInfo,
  writeResult,
} from '@embedpool/core/queue';
import { type Job, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';

export const FAKE_DIM = 8;
export const FAKE_MODEL = 'fake-dinov2';

/** A value per image derived from its text, so a test can tell which vector belongs to which row. */
export function fakeSeed(image: Exclude<ImageRef, { kind: 'inline' }>): number {
  const text = image.kind === 'url' ? image.url : image.data;
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) % 1000;
  return h;
}

export function fakeVector(image: Exclude<ImageRef, { kind: 'inline' }>): number[] {
  return Array.from({ length: FAKE_DIM }, (_, j) => Math.fround(fakeSeed(image) + j * 0.25 - 1.5));
}

/**
 * Stands in for apps/worker: reads a score job, writes float32 rows with writeResult, returns a ScoreResult.
 * A URL containing "fail" fails that image, the way a worker reports a per-image problem; one containing
 * "crash" fails the whole job, as an unexpected worker error does.
 */
export class FakeWorker {
  readonly worker: Worker<ScoreJobData, ScoreResult>;
  readonly results: Redis;
  /** Ids of the jobs processed, in order. */
  readonly jobIds: string[] = [];
  private readonly connection: Redis;

  constructor(
    redisUrl: string,
    private readonly prefix: string,
  ) {
    this.results = createRedis(redisUrl, 'producer');
    this.connection = createRedis(redisUrl, 'consumer');
    this.worker = new Worker<ScoreJobData, ScoreResult>(QUEUES.embed, (job) => this.process(job), {
      connection: this.connection,
      prefix,
      concurrency: 8,
    });
    this.worker.on('error', () => {});
  }

  async ready(): Promise<void> {
    await this.worker.waitUntilReady();
    await this.resultsReady();
  }

  async heartbeat(info: Partial<WorkerInfo> = {}): Promise<void> {
    await heartbeat(this.results, this.prefix, {
      id: 'fake-1',
      host: hostname(),
      pid: process.pid,
      model: 'fake.onnx',
      modelId: FAKE_MODEL,
      dim: FAKE_DIM,
      provider: 'cpu',
      randomWeights: false,
      startedAt: Date.now(),
      ...info,
    });
  }

  /** While set, jobs with a URL containing "slow" wait for it: a request a test can hold in flight. */
  gate: Promise<void> | undefined;

  private async process(job: Job<ScoreJobData, ScoreResult>): Promise<ScoreResult> {
    // Inline bytes (staged by the API) read back as the base64 the caller sent, so fakeSeed sees the same text.
    const reader = new InlineReader(job.data.inline, this.results, { timeoutMs: 5_000 });
    const images = await Promise.all(
      job.data.images.map(async (ref) =>
        ref.kind === 'inline'
          ? { kind: 'base64' as const, data: Buffer.from((await reader.read(ref)).bytes).toString('base64') }
          : ref,
      ),
    );
    this.jobIds.push(job.id!);
    if (images.some((i) => i.kind === 'url' && i.url.includes('slow'))) await this.gate;
    const out = new Float32Array(images.length * FAKE_DIM);
    const failures: ItemFailure[] = [];
    images.forEach((image, index) => {
      if (image.kind === 'url' && image.url.includes('crash')) throw new UnrecoverableError('fake crash');
      if (image.kind === 'url' && image.url.includes('fail')) {
        failures.push({ index, code: 'URL_HTTP_STATUS', message: 'fetch answered 404 (fake)' });
        return;
      }
      out.set(fakeVector(image), index * FAKE_DIM);
    });
    await writeResult(this.results, this.prefix, job.id!, out, 60);
    return { count: images.length, dim: FAKE_DIM, failures, model: FAKE_MODEL };
  }

  /** Forced: a graceful close waits for a main loop that may be blocked on a Redis that is gone. */
  async close(): Promise<void> {
    await this.worker.close(true);
    // BullMQ leaves a connection it was given (shared) open.
    this.connection.disconnect();
    this.results.disconnect();
  }

  /** Resolves once the connection a heartbeat uses is up again after a Redis restart. */
  async resultsReady(): Promise<void> {
    if (this.results.status !== 'ready') await once(this.results, 'ready');
  }
}
