import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { EmbedpoolError } from '../errors';
import { bullmqTelemetry } from '../telemetry';
import { addBacklog, removeBacklog } from './backlog';
import { JOBS, keys, QUEUES } from './names';
import { type ScoreJobData, type ScoreJobInput, scoreJobSchema } from './schemas';

export interface ScoreQueueOptions {
  prefix: string;
  /** Worker crashes are retried this many times in all (stalled jobs count as attempts too). */
  attempts?: number;
  /** Bound on BullMQ's events stream, so Redis memory stays flat under sustained load. */
  eventsMaxLen?: number;
}

/** The producer side of the embed queue: validates every payload before it reaches Redis. */
export class ScoreQueue {
  readonly queue: Queue<ScoreJobData>;
  private readonly attempts: number;
  private readonly prefix: string;

  constructor(
    private readonly connection: Redis,
    opts: ScoreQueueOptions,
  ) {
    this.prefix = opts.prefix;
    this.attempts = opts.attempts ?? 3;
    this.queue = new Queue<ScoreJobData>(QUEUES.embed, {
      connection,
      prefix: opts.prefix,
      streams: { events: { maxLen: opts.eventsMaxLen ?? 10_000 } },
      // Traces: the producer span, and the trace context carried in the job to the worker.
      ...bullmqTelemetry(),
    });
    // Errors surface on the calls that hit them; the emitter's copy would only crash the process.
    this.queue.on('error', () => {});
  }

  async add(input: ScoreJobInput): Promise<string> {
    const parsed = scoreJobSchema.safeParse(input);
    if (!parsed.success)
      throw new EmbedpoolError('BAD_REQUEST', `invalid score job: ${parsed.error.message}`);
    const data = parsed.data;
    try {
      // Counted before it is queued: a worker may finish the job before this add returns, and its HDEL
      // must find the entry (the other order leaked one entry per such race, for good).
      await addBacklog(this.connection, this.prefix, data.requestId, data.images.length);
    } catch (err) {
      throw new EmbedpoolError('UNAVAILABLE', `queue unavailable: ${(err as Error).message}`, { cause: err });
    }
    try {
      const job = await this.queue.add(JOBS.score, data, {
        jobId: data.requestId,
        attempts: this.attempts,
        backoff: { type: 'exponential', delay: 500 },
        // The answer travels through the result key; the job record has no reader once it is done.
        removeOnComplete: true,
        removeOnFail: { age: 3600, count: 1000 },
      });
      return job.id!;
    } catch (err) {
      await removeBacklog(this.connection, this.prefix, data.requestId).catch(() => {});
      throw new EmbedpoolError('UNAVAILABLE', `queue unavailable: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Removes a job nobody waits for any more; an active job cannot be removed, so it is marked instead. */
  async cancel(jobId: string): Promise<'removed' | 'marked'> {
    try {
      const removed = await this.queue.remove(jobId);
      if (removed === 1) {
        await removeBacklog(this.connection, this.prefix, jobId);
        return 'removed';
      }
    } catch {
      // Locked by a worker: fall through to marking it.
    }
    await this.connection.set(keys.cancelled(this.prefix, jobId), '1', 'EX', 600).catch(() => {});
    return 'marked';
  }

  close(): Promise<void> {
    return this.queue.close();
  }
}
