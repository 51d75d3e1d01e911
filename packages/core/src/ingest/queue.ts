import { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { EmbedpoolError } from '../errors';
import { chunkId, INGEST_JOBS, INGEST_QUEUES, ingestJobIds } from './names';
import type { ChunkJobData, PlanJobData } from './schemas';

export interface IngestQueueOptions {
  prefix: string;
  /** INGEST_ATTEMPTS: tries per job before its failure is recorded. */
  attempts: number;
  /** CALLBACK_ATTEMPTS / CALLBACK_BACKOFF_MS for the completion callback. */
  callbackAttempts?: number;
  callbackBackoffMs?: number;
  eventsMaxLen?: number;
}

/**
 * Producer side of ingestion's two queues. Every job id is deterministic (`<id>-p<round>`,
 * `<id>-c<seq>`, `<id>-f<round>`), so a replay after a crash adds nothing that is still queued, and a job
 * that already ran is recognised by its processor (the committed bitmap, the finalized round).
 */
export class IngestQueues {
  readonly plan: Queue;
  readonly chunks: Queue<ChunkJobData>;

  constructor(
    connection: Redis,
    private readonly opts: IngestQueueOptions,
  ) {
    const streams = { events: { maxLen: opts.eventsMaxLen ?? 10_000 } };
    this.plan = new Queue(INGEST_QUEUES.plan, { connection, prefix: opts.prefix, streams });
    this.chunks = new Queue<ChunkJobData>(INGEST_QUEUES.chunks, { connection, prefix: opts.prefix, streams });
    this.plan.on('error', () => {});
    this.chunks.on('error', () => {});
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new EmbedpoolError('UNAVAILABLE', `queue unavailable: ${(err as Error).message}`, { cause: err });
    }
  }

  private get common() {
    return {
      attempts: this.opts.attempts,
      backoff: { type: 'exponential', delay: 1_000 },
      removeOnComplete: true,
      removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
    };
  }

  addPlan(data: PlanJobData): Promise<unknown> {
    return this.guard(() =>
      this.plan.add(INGEST_JOBS.plan, data, {
        ...this.common,
        jobId: ingestJobIds.plan(data.ingestionId, data.round),
      }),
    );
  }

  addFinalize(data: PlanJobData): Promise<unknown> {
    return this.guard(() =>
      this.plan.add(INGEST_JOBS.finalize, data, {
        ...this.common,
        jobId: ingestJobIds.finalize(data.ingestionId, data.round),
      }),
    );
  }

  addCallback(data: PlanJobData): Promise<unknown> {
    return this.guard(() =>
      this.plan.add(INGEST_JOBS.callback, data, {
        attempts: this.opts.callbackAttempts ?? 8,
        backoff: { type: 'exponential', delay: this.opts.callbackBackoffMs ?? 1_000 },
        removeOnComplete: true,
        removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
        jobId: ingestJobIds.callback(data.ingestionId, data.round),
      }),
    );
  }

  /** One addBulk (a single MULTI) for a page's chunks. */
  async addChunks(chunks: readonly ChunkJobData[]): Promise<void> {
    if (chunks.length === 0) return;
    await this.guard(() =>
      this.chunks.addBulk(
        chunks.map((c) => ({
          name: INGEST_JOBS.chunk,
          data: c,
          opts: { ...this.common, jobId: chunkId(c.ingestionId, c.round, c.seq) },
        })),
      ),
    );
  }

  /** Brings a parked (delayed) planner back now; false when it was not delayed. */
  async wakePlanner(data: PlanJobData): Promise<boolean> {
    try {
      const job = await Job.fromId(this.plan, ingestJobIds.plan(data.ingestionId, data.round));
      if (!job) return false;
      await job.promote();
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.plan.close().catch(() => {});
    await this.chunks.close().catch(() => {});
  }
}
