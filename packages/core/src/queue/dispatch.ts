import type { Job } from 'bullmq';
import { EmbedpoolError } from '../errors';
import {
  isJobName,
  JOB_CATALOGUE,
  type JobData,
  type JobName,
  type JobsOn,
  type QueueName,
} from './catalogue';
import { permanentJobFailure, toJobFailure } from './job-failure';

/** What a worker runs for one job name: `job.data` is the payload as its catalogue schema parsed it. */
export type Handler<K extends JobName> = (job: Job<JobData<K>>, token?: string) => Promise<unknown>;

/** One handler for every job name of a queue: a missing one is a compile error. */
export type Handlers<Q extends QueueName> = { [K in JobsOn<Q>]: Handler<K> };

export interface DispatchOptions {
  /**
   * Turn a thrown permanent EmbedpoolError into an UnrecoverableError carrying its code (no retry). Default
   * true. Ingestion's processors pass false: they decide their last attempt themselves and record the
   * failure in the ingestion before giving up, so what they throw must keep its retries.
   */
  failPermanentAtOnce?: boolean;
}

/**
 * The one processor of a queue's BullMQ Worker: finds the handler by job name, validates the payload
 * against the catalogue on dequeue (a producer of another version may have queued it), and maps a
 * permanent EmbedpoolError to a permanent job failure whose code the API and the stores read back. An
 * unknown name or an invalid payload fails the job permanently with BAD_REQUEST.
 */
export function createDispatcher<Q extends QueueName>(
  queue: Q,
  handlers: Handlers<Q>,
  opts: DispatchOptions = {},
): (job: Job, token?: string) => Promise<unknown> {
  const failAtOnce = opts.failPermanentAtOnce ?? true;
  const table = handlers as unknown as Record<string, Handler<JobName>>;
  return async (job: Job, token?: string) => {
    const name = job.name;
    const handler = isJobName(name) && JOB_CATALOGUE[name].queue === queue ? table[name] : undefined;
    if (!handler) throw permanentJobFailure('BAD_REQUEST', `unknown job ${name} on queue ${queue}`);
    const parsed = JOB_CATALOGUE[name as JobName].schema.safeParse(job.data);
    if (!parsed.success) {
      throw permanentJobFailure('BAD_REQUEST', `invalid job payload (${name}): ${parsed.error.message}`);
    }
    // The handler sees the parsed payload (defaults applied); Redis keeps what the producer wrote.
    job.data = parsed.data;
    try {
      return await handler(job as Job<JobData<JobName>>, token);
    } catch (err) {
      if (failAtOnce && err instanceof EmbedpoolError && err.permanent) throw toJobFailure(err);
      throw err;
    }
  };
}
