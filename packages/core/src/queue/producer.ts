import { type Job, type JobsOptions, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { EmbedpoolError } from '../errors';
import { bullmqTelemetry } from '../telemetry';
import {
  JOB_CATALOGUE,
  type JobData,
  type JobInput,
  type JobName,
  jobOptions,
  QUEUE_NAMES,
  type QueueName,
  type RetryPolicy,
  retryPolicyFrom,
} from './catalogue';

declare const validated: unique symbol;
/** A payload that passed its catalogue schema (only `JobProducer.parse` makes one). */
export type ValidJob<K extends JobName> = JobData<K> & { readonly [validated]: K };

/** What a caller may set per job on top of the catalogue's options. */
export type EnqueueOptions = Pick<JobsOptions, 'jobId' | 'priority' | 'delay'>;

export interface JobProducerOptions {
  prefix: string;
  /** Retry policies; absent ones take the documented defaults (DEFAULT_RETRY_POLICY). */
  policy?: Partial<RetryPolicy>;
  /** Bound on BullMQ's events stream, so Redis memory stays flat under sustained load. */
  eventsMaxLen?: number;
}

/**
 * The one place BullMQ queues are opened (one per catalogue queue, on first use) and jobs are added. Every
 * payload is parsed against its catalogue schema before it reaches Redis, and every job gets its
 * catalogue options (retries, backoff, retention, priority) from the Config's retry policy.
 */
export class JobProducer {
  readonly prefix: string;
  readonly policy: RetryPolicy;
  private readonly opened = new Map<QueueName, Queue>();

  constructor(
    readonly connection: Redis,
    private readonly opts: JobProducerOptions,
  ) {
    this.prefix = opts.prefix;
    this.policy = retryPolicyFrom(opts.policy ?? {});
  }

  static fromConfig(connection: Redis, config: RetryPolicy & { QUEUE_PREFIX: string }): JobProducer {
    return new JobProducer(connection, { prefix: config.QUEUE_PREFIX, policy: retryPolicyFrom(config) });
  }

  /** The BullMQ queue of `name`, opened once. */
  queue(name: QueueName): Queue {
    let q = this.opened.get(name);
    if (!q) {
      q = new Queue(name, {
        connection: this.connection,
        prefix: this.prefix,
        streams: { events: { maxLen: this.opts.eventsMaxLen ?? 10_000 } },
        // Traces: the producer span, and the trace context carried in the job to the worker.
        ...bullmqTelemetry(),
      });
      // Errors surface on the calls that hit them; the emitter's copy would only crash the process.
      q.on('error', () => {});
      this.opened.set(name, q);
    }
    return q;
  }

  /** Every queue of the catalogue (the dashboard's list). */
  queues(): Queue[] {
    return QUEUE_NAMES.map((name) => this.queue(name));
  }

  /** The payload checked against its schema (defaults applied); BAD_REQUEST when it does not fit. */
  parse<K extends JobName>(name: K, data: JobInput<K>): ValidJob<K> {
    const parsed = JOB_CATALOGUE[name].schema.safeParse(data);
    if (!parsed.success)
      throw new EmbedpoolError('BAD_REQUEST', `invalid ${name} job: ${parsed.error.message}`);
    return parsed.data as ValidJob<K>;
  }

  /** Adds a parsed job with its catalogue options; UNAVAILABLE when Redis refuses. */
  async add<K extends JobName>(name: K, data: ValidJob<K>, opts: EnqueueOptions = {}): Promise<Job> {
    try {
      return await this.queue(JOB_CATALOGUE[name].queue).add(name, data, this.options(name, opts));
    } catch (err) {
      throw unavailable(err);
    }
  }

  /** Parses and adds one job (a payload that does not fit rejects, as a refused add does). */
  async enqueue<K extends JobName>(name: K, data: JobInput<K>, opts: EnqueueOptions = {}): Promise<Job> {
    return this.add(name, this.parse(name, data), opts);
  }

  /** Parses every payload first, then adds them all in one addBulk (a single MULTI). */
  async enqueueBulk<K extends JobName>(
    name: K,
    jobs: readonly { data: JobInput<K>; opts?: EnqueueOptions }[],
  ): Promise<Job[]> {
    if (jobs.length === 0) return [];
    const parsed = jobs.map((j) => ({
      name,
      data: this.parse(name, j.data),
      opts: this.options(name, j.opts),
    }));
    try {
      return await this.queue(JOB_CATALOGUE[name].queue).addBulk(parsed);
    } catch (err) {
      throw unavailable(err);
    }
  }

  private options(name: JobName, opts: EnqueueOptions = {}): JobsOptions {
    return { ...jobOptions(name, this.policy), ...opts };
  }

  async close(): Promise<void> {
    await Promise.all([...this.opened.values()].map((q) => q.close().catch(() => {})));
  }
}

function unavailable(err: unknown): EmbedpoolError {
  if (err instanceof EmbedpoolError) return err;
  return new EmbedpoolError('UNAVAILABLE', `queue unavailable: ${(err as Error).message}`, { cause: err });
}
