import { Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { JobProducer } from '../queue/producer';
import { chunkId, INGEST_JOBS, INGEST_QUEUES, ingestJobIds } from './names';
import type { ChunkJobData, PlanJobData } from './schemas';

export interface IngestQueueOptions {
  prefix: string;
  /** INGEST_ATTEMPTS: tries per job before its failure is recorded. */
  attempts: number;
  /** INGEST_BACKOFF_MS: the first retry delay (exponential). */
  backoffMs?: number;
  eventsMaxLen?: number;
  /**
   * The process's producer (the retry policies then come from its Config, not from the options above).
   * Default: one of its own, made from them.
   */
  producer?: JobProducer;
}

/**
 * Producer side of ingestion's two queues, through the job catalogue (which validates each payload and
 * gives the retry policy). Every job id is deterministic (`<id>-p<round>`, `<id>-c<seq>`, `<id>-f<round>`),
 * so a replay after a crash adds nothing that is still queued, and a job that already ran is recognised by
 * its processor (the committed bitmap, the finalized round).
 */
export class IngestQueues {
  readonly plan: Queue;
  readonly chunks: Queue<ChunkJobData>;
  private readonly producer: JobProducer;

  constructor(
    connection: Redis,
    private readonly opts: IngestQueueOptions,
  ) {
    this.producer =
      opts.producer ??
      new JobProducer(connection, {
        prefix: opts.prefix,
        policy: {
          INGEST_ATTEMPTS: opts.attempts,
          ...(opts.backoffMs === undefined ? {} : { INGEST_BACKOFF_MS: opts.backoffMs }),
        },
        ...(opts.eventsMaxLen === undefined ? {} : { eventsMaxLen: opts.eventsMaxLen }),
      });
    this.plan = this.producer.queue(INGEST_QUEUES.plan);
    this.chunks = this.producer.queue(INGEST_QUEUES.chunks) as Queue<ChunkJobData>;
  }

  addPlan(data: PlanJobData): Promise<unknown> {
    return this.producer.enqueue(INGEST_JOBS.plan, data, {
      jobId: ingestJobIds.plan(data.ingestionId, data.round),
    });
  }

  addFinalize(data: PlanJobData): Promise<unknown> {
    return this.producer.enqueue(INGEST_JOBS.finalize, data, {
      jobId: ingestJobIds.finalize(data.ingestionId, data.round),
    });
  }

  /** One addBulk (a single MULTI) for a page's chunks. */
  async addChunks(chunks: readonly ChunkJobData[]): Promise<void> {
    await this.producer.enqueueBulk(
      INGEST_JOBS.chunk,
      chunks.map((c) => ({ data: c, opts: { jobId: chunkId(c.ingestionId, c.round, c.seq) } })),
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

  /** Closes the queues when they are this wrapper's own (a shared producer is closed by its owner). */
  async close(): Promise<void> {
    if (!this.opts.producer) await this.producer.close();
  }
}
