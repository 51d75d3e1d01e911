/**
 * The deliver stage's signed callbacks: one processor for the `deliveries` queue, whatever the delivery
 * reports on (an async job's result, an ingestion's completion). It builds the body from the record at
 * send time, signs it with a fresh timestamp, POSTs it under the callback URL policy, and writes the
 * outcome to the record. A failing receiver is retried with backoff by BullMQ, never re-embedded.
 */
import { type DeliveryJobData, deliveryHeaders, goneReason } from '@embedpool/core/delivery';
import { type ErrorCode, toEmbedpoolError } from '@embedpool/core/errors';
import type { Logger } from '@embedpool/core/logger';
import { safeFetchStream, type UrlPolicy } from '@embedpool/core/net';
import { type Job, UnrecoverableError } from 'bullmq';
import type { Counter, Histogram } from 'prom-client';
import {
  type DeliveryRecord,
  type DeliveryRecordSources,
  deliverySubject,
  loadDeliveryRecord,
} from './deliver-records';

/** A URL the policy refuses can never become deliverable by retrying: dead-lettered at once. */
const UNRECOVERABLE_CODES: ReadonlySet<ErrorCode> = new Set([
  'URL_INVALID',
  'URL_SCHEME_NOT_ALLOWED',
  'URL_CREDENTIALS_NOT_ALLOWED',
  'URL_ADDRESS_NOT_ALLOWED',
]);

export interface DeliverStageOptions extends DeliveryRecordSources {
  /** CALLBACK_SECRET; without it every attempt fails (and is retried) with CONFIG_INVALID. */
  secret: string | undefined;
  policy: UrlPolicy;
  metrics: { deliveries: Counter<'outcome'>; duration: Histogram<'outcome'> };
  logger: Logger;
}

/** The `deliver` handler of the `deliveries` queue (run through its dispatcher). */
export function createDeliverProcessor(opts: DeliverStageOptions) {
  const { metrics, logger } = opts;
  return async (job: Job<DeliveryJobData>) => {
    // Validated on dequeue by the dispatcher (delivery-worker.ts), which counts a refused one as dead.
    const data = job.data;
    const attempt = job.attemptsMade + 1;
    const subject = deliverySubject(data);
    const log = logger.child({ ...subject.log, deliveryId: data.deliveryId, attempt });
    const record = await loadDeliveryRecord(opts, data, attempt);
    if (!record) {
      metrics.deliveries.inc({ outcome: 'dead' });
      log.warn('callback dead-lettered: record expired');
      throw new UnrecoverableError(`RECORD_EXPIRED: the record of ${subject.name} has expired`);
    }
    // A duplicate run (re-queued after the first one finished) must not POST twice.
    if (record.delivered) return { skipped: 'already delivered' };
    return send(opts, data, record, { log, last: attempt >= (job.opts.attempts ?? 1) });
  };
}

/** One signed POST; records its outcome and returns the receiver's status, or throws for BullMQ to retry. */
async function send(
  opts: DeliverStageOptions,
  data: DeliveryJobData,
  record: DeliveryRecord,
  attempt: { log: Logger; last: boolean },
): Promise<{ status: number }> {
  const { metrics } = opts;
  const { log } = attempt;
  /** Records a failed attempt; returns the error to throw (BullMQ retries unless it is unrecoverable). */
  const fail = async (message: string, o: { status?: number; unrecoverable?: boolean } = {}) => {
    const dead = o.unrecoverable === true || attempt.last;
    await record.record({
      state: dead ? 'dead' : 'pending',
      lastError: message,
      ...(o.status === undefined ? {} : { lastStatus: o.status }),
    });
    metrics.deliveries.inc({ outcome: dead ? 'dead' : 'failed_attempt' });
    if (dead) log.warn({ err: message, status: o.status }, 'callback dead-lettered');
    else log.info({ err: message, status: o.status }, 'callback attempt failed; will retry');
    return o.unrecoverable ? new UnrecoverableError(message) : new Error(message);
  };

  let body: string;
  try {
    body = await record.body();
  } catch (err) {
    if (goneReason(err)) throw await fail((err as Error).message, { unrecoverable: true });
    throw err;
  }
  if (!opts.secret) throw await fail('CONFIG_INVALID: CALLBACK_SECRET is not set on the delivery worker');

  // A fresh timestamp per attempt, so a retry hours later still passes the receiver's tolerance.
  const headers = deliveryHeaders({
    secret: opts.secret,
    deliveryId: data.deliveryId,
    body,
    event: record.event,
  });
  const started = performance.now();
  let status: number;
  try {
    const res = await safeFetchStream(data.url, opts.policy, { method: 'POST', headers, body });
    status = res.status;
    res.body.on('error', () => {});
    res.body.destroy();
  } catch (err) {
    metrics.duration.observe({ outcome: 'failed' }, (performance.now() - started) / 1000);
    const e = toEmbedpoolError(err, 'URL_FETCH_FAILED');
    const httpStatus = e.code === 'URL_HTTP_STATUS' ? Number(e.details?.status) : undefined;
    throw await fail(`${e.code}: ${e.message}`, {
      status: Number.isInteger(httpStatus) ? httpStatus : undefined,
      unrecoverable: UNRECOVERABLE_CODES.has(e.code),
    });
  }
  metrics.duration.observe({ outcome: 'delivered' }, (performance.now() - started) / 1000);
  await record.record({ state: 'delivered', lastStatus: status, deliveredAt: Date.now() });
  metrics.deliveries.inc({ outcome: 'delivered' });
  log.info({ status }, 'callback delivered');
  return { status };
}
