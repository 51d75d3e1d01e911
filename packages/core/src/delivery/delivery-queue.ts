/**
 * Producer side of callback deliveries: one BullMQ job per delivery on its own queue, so a failing
 * receiver is retried (with backoff) without ever re-running inference. Async jobs' results and
 * ingestions' completion callbacks both go this way.
 */
import { createHash } from 'node:crypto';
import type { BackoffStrategy, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Config } from '../config';
import { EmbedpoolError } from '../errors';
import { type JobOutput, type JobRecord, type JobStore, jobKeys } from '../jobs';
import { loadLua } from '../lua';
import { JOBS, QUEUES } from '../queue/names';
import { JobProducer } from '../queue/producer';
import {
  ingestionDeliveryId,
  ingestionDeliveryQueueJobId,
  ingestionDeliverySchema,
} from './ingestion-delivery';
import {
  DELIVERY_BACKOFF_TYPE,
  type DeliveryJobData,
  deliveryJobSchema,
  type EmbedJobDeliveryData,
  embedJobDeliverySchema,
} from './job';
import type { DeliveryKind } from './payload';

export {
  DELIVERY_BACKOFF_TYPE,
  type DeliveryJobData,
  deliveryJobSchema,
  type EmbedJobDeliveryData,
  embedJobDeliverySchema,
};

/** No single wait between two attempts is longer than this. */
export const DELIVERY_BACKOFF_CAP_MS = 10 * 60_000;
/** Record hash field counting redrives (next to the `delivery` field; not part of JobRecord). */
export const REDRIVE_FIELD = 'deliveryRedrives';

export interface DeliveryRequest {
  jobId: string;
  url: string;
  kind: DeliveryKind;
}

export type EnqueueOutcome =
  /** A delivery job was added (or re-added while the record already said pending). */
  | 'queued'
  /** The record already had a pending delivery: the same BullMQ job id was used, so nothing is duplicated. */
  | 'already_queued'
  /** Already delivered: nothing was queued. */
  | 'already_delivered'
  /** Already dead-lettered: nothing was queued (use redriveDelivery). */
  | 'dead_lettered';

export interface EnqueueResult {
  outcome: EnqueueOutcome;
  deliveryId: string;
  /** The BullMQ job id: `${jobId}` or `${jobId}-redrive-${n}`. */
  queueJobId: string;
  redrive: number;
}

export interface DeliveryQueueOptions {
  prefix: string;
  /** CALLBACK_SECRET; without it enqueue refuses with CONFIG_INVALID. */
  secret: string | undefined;
  /** CALLBACK_ATTEMPTS: attempts per delivery run (a redrive gets as many again). */
  attempts: number;
  /** CALLBACK_BACKOFF_MS: the base of the exponential backoff. */
  backoffMs: number;
  /** How long dead-lettered (failed) delivery jobs stay for inspection. Default 7 days. */
  failedRetentionSeconds?: number;
  eventsMaxLen?: number;
  /**
   * The process's producer: the retry policy (CALLBACK_ATTEMPTS, CALLBACK_BACKOFF_MS, JOB_TTL_S) then comes
   * from its Config, not from the three options above. Default: one of its own, made from them.
   */
  producer?: JobProducer;
}

/** The id receivers see in Embedpool-Delivery-Id: the same for every attempt and every redrive of a job's delivery. */
export function deliveryIdFor(jobId: string): string {
  return `dlv_${createHash('sha256').update(`embedpool-delivery:${jobId}`).digest('hex').slice(0, 32)}`;
}

/** The BullMQ job id of a delivery run: deterministic, so a retried embed job cannot queue a duplicate. */
export function deliveryQueueJobId(jobId: string, redrive = 0): string {
  return redrive === 0 ? jobId : `${jobId}-redrive-${redrive}`;
}

/** Where (and what) a job's output asks to be POSTed, if anywhere. */
export function deliveryTargetFor(output: JobOutput): { url: string; kind: DeliveryKind } | undefined {
  if (output.type === 'callback') return { url: output.url, kind: 'vectors' };
  if (output.type === 'blob' && output.callbackUrl) return { url: output.callbackUrl, kind: 'blob-pointer' };
  return undefined;
}

/**
 * Exponential backoff with equal jitter: the n-th retry waits between half and all of
 * min(cap, base * 2^(n-1)).
 */
export function deliveryBackoffDelay(
  attemptsMade: number,
  baseMs: number,
  opts: { capMs?: number; random?: () => number } = {},
): number {
  const cap = opts.capMs ?? DELIVERY_BACKOFF_CAP_MS;
  const random = opts.random ?? Math.random;
  const ceiling = Math.min(cap, baseMs * 2 ** Math.max(0, attemptsMade - 1));
  return Math.max(1, Math.round(ceiling / 2 + (random() * ceiling) / 2));
}

/** For the delivery Worker's `settings.backoffStrategy`; the base comes from each job's `backoff.delay`. */
export function deliveryBackoffStrategy(
  defaultBaseMs: number,
  capMs = DELIVERY_BACKOFF_CAP_MS,
): BackoffStrategy {
  return (attemptsMade, _type, _err, job) => {
    const backoff = job?.opts.backoff;
    const base = typeof backoff === 'object' && backoff.delay ? backoff.delay : defaultBaseMs;
    return deliveryBackoffDelay(attemptsMade, base, { capMs });
  };
}

// lua/delivery-claim.lua: Claims the record's delivery atomically with the checks that decide whether to queue.
const CLAIM = loadLua('delivery-claim', import.meta.url).replaceAll('{{REDRIVE_FIELD}}', REDRIVE_FIELD);

// lua/delivery-unclaim.lua: Undoes a redrive claim whose job could not be queued: only while the delivery is still pending.
const UNCLAIM = loadLua('delivery-unclaim', import.meta.url).replaceAll('{{REDRIVE_FIELD}}', REDRIVE_FIELD);

const requestSchema = z.object({
  jobId: z.string().min(1).max(128),
  url: z.string().url(),
  kind: z.enum(['vectors', 'blob-pointer']),
});

export class DeliveryQueue {
  readonly queue: Queue;
  private readonly producer: JobProducer;

  constructor(
    private readonly redis: Redis,
    private readonly opts: DeliveryQueueOptions,
  ) {
    this.producer =
      opts.producer ??
      new JobProducer(redis, {
        prefix: opts.prefix,
        policy: {
          CALLBACK_ATTEMPTS: opts.attempts,
          CALLBACK_BACKOFF_MS: opts.backoffMs,
          ...(opts.failedRetentionSeconds === undefined ? {} : { JOB_TTL_S: opts.failedRetentionSeconds }),
        },
        ...(opts.eventsMaxLen === undefined ? {} : { eventsMaxLen: opts.eventsMaxLen }),
      });
    this.queue = this.producer.queue(QUEUES.deliveries);
  }

  /** CALLBACK_SECRET, CALLBACK_ATTEMPTS, CALLBACK_BACKOFF_MS, QUEUE_PREFIX; dead letters kept for JOB_TTL_S. */
  static fromConfig(redis: Redis, config: Config, producer?: JobProducer): DeliveryQueue {
    return new DeliveryQueue(redis, {
      ...(producer ? { producer } : {}),
      prefix: config.QUEUE_PREFIX,
      secret: config.CALLBACK_SECRET,
      attempts: config.CALLBACK_ATTEMPTS,
      backoffMs: config.CALLBACK_BACKOFF_MS,
      failedRetentionSeconds: config.JOB_TTL_S,
    });
  }

  /** Whether deliveries can be signed at all (the API should refuse callback jobs otherwise). */
  get configured(): boolean {
    return Boolean(this.opts.secret);
  }

  /**
   * Queues the delivery of a finished job and marks its record `pending`. Idempotent per (job, redrive):
   * the BullMQ job id is `${jobId}` (or `${jobId}-redrive-${n}`), and a delivery already delivered or
   * dead-lettered is not queued again. NOT_FOUND when the record is gone; CONFIG_INVALID without a secret.
   */
  async enqueue(request: DeliveryRequest, options: { redrive?: number } = {}): Promise<EnqueueResult> {
    if (!this.opts.secret) {
      throw new EmbedpoolError('CONFIG_INVALID', 'CALLBACK_SECRET is not set: callbacks cannot be signed');
    }
    const parsed = requestSchema.safeParse(request);
    if (!parsed.success) throw new EmbedpoolError('BAD_REQUEST', `invalid delivery: ${parsed.error.message}`);
    const { jobId, url, kind } = parsed.data;
    const redrive = options.redrive ?? 0;
    if (!Number.isSafeInteger(redrive) || redrive < 0) {
      throw new EmbedpoolError('BAD_REQUEST', `invalid redrive number ${redrive}`);
    }
    const deliveryId = deliveryIdFor(jobId);
    const queueJobId = deliveryQueueJobId(jobId, redrive);
    const result = (base: Omit<EnqueueResult, 'deliveryId' | 'queueJobId' | 'redrive'>) => ({
      ...base,
      deliveryId,
      queueJobId,
      redrive,
    });
    const key = jobKeys.record(this.opts.prefix, jobId);

    let status: string;
    let previous: string;
    let previousRedrives: number;
    try {
      const pending = { state: 'pending', deliveryId, url, attempts: 0 };
      const args =
        redrive === 0 ? ['first', JSON.stringify(pending)] : ['redrive', url, String(redrive), deliveryId];
      const reply = (await this.redis.eval(CLAIM, 1, key, ...args)) as [string, string, string];
      [status, previous] = reply;
      previousRedrives = Number(reply[2]);
    } catch (err) {
      throw new EmbedpoolError('UNAVAILABLE', `queue unavailable: ${(err as Error).message}`, { cause: err });
    }

    if (status === 'missing') throw new EmbedpoolError('NOT_FOUND', `job ${jobId} not found`);
    let attemptOffset = 0;
    let outcome: EnqueueOutcome = 'queued';
    if (redrive === 0) {
      if (status === 'delivered') return result({ outcome: 'already_delivered' });
      if (status === 'dead') return result({ outcome: 'dead_lettered' });
      if (status === 'pending') outcome = 'already_queued';
    } else {
      if (status === 'none') throw new EmbedpoolError('BAD_REQUEST', `job ${jobId} has no callback delivery`);
      if (status === 'stale') {
        throw new EmbedpoolError('BAD_REQUEST', `redrive ${redrive} of job ${jobId} was already used`, {
          details: { redrives: previousRedrives },
        });
      }
      if (status !== 'ok') {
        throw new EmbedpoolError('BAD_REQUEST', 'delivery is not dead-lettered', {
          details: { state: status },
        });
      }
      attemptOffset = Number((JSON.parse(previous) as { attempts?: number }).attempts ?? 0) || 0;
    }

    const data: EmbedJobDeliveryData = { jobId, url, kind, deliveryId, redrive, attemptOffset };
    try {
      await this.producer.enqueue(JOBS.deliver, data, { jobId: queueJobId });
    } catch (err) {
      if (redrive > 0) {
        await this.redis.eval(UNCLAIM, 1, key, previous, String(previousRedrives)).catch(() => {});
      }
      throw err;
    }
    if (redrive > 0) {
      // The run this redrive replaces is no longer a dead letter (the record keeps its lastError).
      await this.queue.remove(deliveryQueueJobId(jobId, previousRedrives)).catch(() => 0);
    }
    return result({ outcome });
  }

  /**
   * Queues the completion callback of an ingestion's round. Idempotent per (ingestion, round): the BullMQ
   * job id is `${ingestionId}-cb${round}`. The delivery worker writes the outcome to the ingestion
   * record's `callback` field. CONFIG_INVALID without a secret.
   */
  async enqueueIngestionFinished(request: {
    ingestionId: string;
    round: number;
    url: string;
  }): Promise<{ deliveryId: string; queueJobId: string }> {
    if (!this.opts.secret) {
      throw new EmbedpoolError('CONFIG_INVALID', 'CALLBACK_SECRET is not set: callbacks cannot be signed');
    }
    const { ingestionId, round, url } = request;
    const deliveryId = ingestionDeliveryId(ingestionId, round);
    const parsed = ingestionDeliverySchema.safeParse({
      kind: 'ingestion-finished',
      ingestionId,
      round,
      url,
      deliveryId,
    });
    if (!parsed.success) throw new EmbedpoolError('BAD_REQUEST', `invalid delivery: ${parsed.error.message}`);
    const queueJobId = ingestionDeliveryQueueJobId(ingestionId, round);
    try {
      await this.producer.enqueue(JOBS.deliver, parsed.data, { jobId: queueJobId });
    } catch (err) {
      throw new EmbedpoolError('UNAVAILABLE', `queue unavailable: ${(err as Error).message}`, { cause: err });
    }
    return { deliveryId, queueJobId };
  }

  /** The number the next redrive of `jobId` gets (1 for the first). */
  async nextRedrive(jobId: string): Promise<number> {
    const current = await this.redis.hget(jobKeys.record(this.opts.prefix, jobId), REDRIVE_FIELD);
    return (Number(current) || 0) + 1;
  }

  /** Closes the queue when it is this wrapper's own (a shared producer is closed by its owner). */
  close(): Promise<void> {
    return this.opts.producer ? Promise.resolve() : this.producer.close();
  }
}

/**
 * Sends a dead-lettered delivery again (same delivery id, a fresh set of CALLBACK_ATTEMPTS). NOT_FOUND
 * when the job is gone; BAD_REQUEST when it has no callback or its delivery is not dead-lettered.
 * Ownership checks are the caller's.
 */
export async function redriveDelivery(
  store: JobStore,
  queue: DeliveryQueue,
  jobId: string,
): Promise<EnqueueResult> {
  const record: JobRecord | null = await store.get(jobId);
  if (!record) throw new EmbedpoolError('NOT_FOUND', `job ${jobId} not found`);
  const target = deliveryTargetFor(record.output);
  if (!target || !record.delivery) {
    throw new EmbedpoolError('BAD_REQUEST', `job ${jobId} has no callback delivery`);
  }
  if (record.delivery.state !== 'dead') {
    throw new EmbedpoolError('BAD_REQUEST', 'delivery is not dead-lettered', {
      details: { state: record.delivery.state },
    });
  }
  return queue.enqueue(
    { jobId, url: record.delivery.url || target.url, kind: target.kind },
    { redrive: await queue.nextRedrive(jobId) },
  );
}
