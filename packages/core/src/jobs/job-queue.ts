import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { EmbedpoolError } from '../errors';
import { addBacklog, removeBacklog } from '../queue/backlog';
import { JOBS, QUEUES } from '../queue/names';
import { bullmqTelemetry } from '../telemetry';
import { type EmbedJobData, embedJobSchema } from './schemas';

/** Sync /score jobs carry no priority and BullMQ serves them first; async jobs queue behind them. */
export const DEFAULT_JOB_PRIORITY = 100;

/** Producer side of async jobs on the shared embed queue. */
export class JobQueue {
  readonly queue: Queue;

  constructor(
    private readonly connection: Redis,
    private readonly opts: { prefix: string; attempts: number; eventsMaxLen?: number },
  ) {
    this.queue = new Queue(QUEUES.embed, {
      connection,
      prefix: opts.prefix,
      streams: { events: { maxLen: opts.eventsMaxLen ?? 10_000 } },
      // Traces: the producer span, and the trace context carried in the job to the worker.
      ...bullmqTelemetry(),
    });
    this.queue.on('error', () => {});
  }

  async add(data: EmbedJobData, priority = DEFAULT_JOB_PRIORITY): Promise<void> {
    const parsed = embedJobSchema.safeParse(data);
    if (!parsed.success) throw new EmbedpoolError('BAD_REQUEST', `invalid job: ${parsed.error.message}`);
    const { jobId } = parsed.data;
    try {
      // Counted before it is queued, as in ScoreQueue.add: a fast worker's HDEL must find the entry.
      await addBacklog(this.connection, this.opts.prefix, jobId, parsed.data.images.length);
      await this.queue.add(JOBS.embedJob, parsed.data, {
        jobId,
        priority,
        attempts: this.opts.attempts,
        backoff: { type: 'exponential', delay: 1000 },
        removeOnComplete: true,
        removeOnFail: { age: 24 * 3600, count: 10_000 },
      });
    } catch (err) {
      await removeBacklog(this.connection, this.opts.prefix, jobId).catch(() => {});
      throw new EmbedpoolError('UNAVAILABLE', `queue unavailable: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Removes a job that no worker has taken yet; false when it is already running or gone. */
  async remove(jobId: string): Promise<boolean> {
    try {
      const removed = (await this.queue.remove(jobId)) === 1;
      if (removed) await removeBacklog(this.connection, this.opts.prefix, jobId);
      return removed;
    } catch {
      return false;
    }
  }

  close(): Promise<void> {
    return this.queue.close();
  }
}
