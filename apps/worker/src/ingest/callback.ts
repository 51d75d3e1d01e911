import { createHash } from 'node:crypto';
import { deliveryHeaders, EVENT_HEADER } from '@embedpool/core/delivery';
import { toEmbedpoolError } from '@embedpool/core/errors';
import { ingestionView } from '@embedpool/core/ingest';
import { safeFetchStream } from '@embedpool/core/net';
import type { Job } from 'bullmq';
import type { IngestDeps } from './deps';

export const EVENT_INGESTION_FINISHED = 'ingestion.finished';

/** Stable across attempts and workers, so a receiver can dedupe. */
export function ingestionDeliveryId(ingestionId: string, round: number): string {
  return `dlv_${createHash('sha256').update(`embedpool-ingestion:${ingestionId}:${round}`).digest('hex').slice(0, 32)}`;
}

/**
 * POSTs the final view of an ingestion to its callbackUrl, signed like job callbacks
 * (`Embedpool-Signature`, see docs/webhooks.md) with the event
 * `ingestion.finished`. Retried with backoff by BullMQ; the record says how it went.
 */
export async function runCallback(
  deps: IngestDeps,
  job: Job,
  ingestionId: string,
  round: number,
): Promise<string> {
  const record = await deps.store.get(ingestionId);
  const url = record?.request.callbackUrl;
  if (!record || !url) return 'none';
  if (!deps.callback) {
    await deps.store.setCallback(ingestionId, {
      url,
      state: 'dead',
      attempts: 0,
      lastError: 'callbacks are not configured on the worker (CALLBACK_SECRET)',
    });
    return 'dead';
  }
  if (record.callback?.state === 'delivered') return 'delivered';
  const body = JSON.stringify({ event: EVENT_INGESTION_FINISHED, ingestion: ingestionView(record, 0) });
  const headers = {
    ...deliveryHeaders({
      secret: deps.callback.secret,
      deliveryId: ingestionDeliveryId(ingestionId, round),
      body,
    }),
    [EVENT_HEADER]: EVENT_INGESTION_FINISHED,
  };
  const attempts = job.attemptsMade + 1;
  const last = attempts >= (job.opts.attempts ?? 1);
  let status: number | undefined;
  try {
    const res = await safeFetchStream(url, deps.callback.policy, { method: 'POST', headers, body });
    status = res.status;
    res.body.on('error', () => {});
    res.body.destroy();
    if (status < 200 || status >= 300) throw new Error(`receiver answered HTTP ${status}`);
    await deps.store.setCallback(ingestionId, { url, state: 'delivered', attempts, deliveredAt: Date.now() });
    return 'delivered';
  } catch (err) {
    const message = toEmbedpoolError(err).message;
    await deps.store.setCallback(ingestionId, {
      url,
      state: last ? 'dead' : 'pending',
      attempts,
      lastError: message,
      ...(status !== undefined ? { lastStatus: status } : {}),
    });
    if (last) return 'dead';
    throw err;
  }
}
