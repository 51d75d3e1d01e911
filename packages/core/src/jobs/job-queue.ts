import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { queueCounted, removeBacklog } from '../queue/backlog';
import { DEFAULT_JOB_PRIORITY } from '../queue/catalogue';
import { JOBS, QUEUES } from '../queue/names';
import { JobProducer } from '../queue/producer';
import type { EmbedJobData } from './schemas';

export { DEFAULT_JOB_PRIORITY };

export interface JobQueueOptions {
  prefix: string;
  /** JOB_ATTEMPTS, when this queue makes its own producer. */
  attempts?: number;
  eventsMaxLen?: number;
  /** The process's producer (its retry policy then comes from its Config); default: one of its own. */
  producer?: JobProducer;
}

/** Producer side of async jobs on the shared embed queue: the catalogue validates; this counts the backlog. */
export class JobQueue {
  readonly queue: Queue;
  private readonly producer: JobProducer;

  constructor(
    private readonly connection: Redis,
    private readonly opts: JobQueueOptions,
  ) {
    this.producer =
      opts.producer ??
      new JobProducer(connection, {
        prefix: opts.prefix,
        policy: opts.attempts === undefined ? {} : { JOB_ATTEMPTS: opts.attempts },
        ...(opts.eventsMaxLen === undefined ? {} : { eventsMaxLen: opts.eventsMaxLen }),
      });
    this.queue = this.producer.queue(QUEUES.embed);
  }

  async add(input: EmbedJobData, priority = DEFAULT_JOB_PRIORITY): Promise<void> {
    const data = this.producer.parse(JOBS.embedJob, input);
    const { jobId } = data;
    await queueCounted(this.connection, this.opts.prefix, jobId, data.images.length, () =>
      this.producer.add(JOBS.embedJob, data, { jobId, priority }),
    );
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

  /** Closes the queue when it is this wrapper's own (a shared producer is closed by its owner). */
  close(): Promise<void> {
    return this.opts.producer ? Promise.resolve() : this.producer.close();
  }
}
