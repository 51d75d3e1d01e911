import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { queueCounted, removeBacklog } from './backlog';
import { JOBS, keys, QUEUES } from './names';
import { JobProducer } from './producer';
import type { ScoreJobInput } from './schemas';

export interface ScoreQueueOptions {
  prefix: string;
  /** SCORE_ATTEMPTS: worker crashes are retried this many times in all (stalled jobs count as attempts too). */
  attempts?: number;
  /** Bound on BullMQ's events stream, so Redis memory stays flat under sustained load. */
  eventsMaxLen?: number;
  /** The process's producer (its retry policy then comes from its Config); default: one of its own. */
  producer?: JobProducer;
}

/** The producer side of /score jobs: the catalogue validates every payload; this adds backlog accounting. */
export class ScoreQueue {
  readonly queue: Queue;
  private readonly producer: JobProducer;
  private readonly prefix: string;

  constructor(
    private readonly connection: Redis,
    private readonly opts: ScoreQueueOptions,
  ) {
    this.prefix = opts.prefix;
    this.producer =
      opts.producer ??
      new JobProducer(connection, {
        prefix: opts.prefix,
        policy: opts.attempts === undefined ? {} : { SCORE_ATTEMPTS: opts.attempts },
        ...(opts.eventsMaxLen === undefined ? {} : { eventsMaxLen: opts.eventsMaxLen }),
      });
    this.queue = this.producer.queue(QUEUES.embed);
  }

  async add(input: ScoreJobInput): Promise<string> {
    const data = this.producer.parse(JOBS.score, input);
    const job = await queueCounted(this.connection, this.prefix, data.requestId, data.images.length, () =>
      this.producer.add(JOBS.score, data, { jobId: data.requestId }),
    );
    return job.id!;
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

  /** Closes the queue when it is this wrapper's own (a shared producer is closed by its owner). */
  close(): Promise<void> {
    return this.opts.producer ? Promise.resolve() : this.producer.close();
  }
}
