/**
 * What a delivery reports on: an async job (its record in the JobStore, body `vectors` or `blob-pointer`)
 * or an ingestion (its record in the IngestionStore, body `ingestion.finished`). The delivery processor
 * (deliver-callback.ts) is the same for both; only reading the body and writing the outcome differ.
 */
import {
  buildDeliveryBody,
  type DeliveryJobData,
  EVENT_INGESTION_FINISHED,
  EVENT_JOB_COMPLETED,
  INGESTION_DELIVERY_KIND,
} from '@embedpool/core/delivery';
import { type IngestionStore, ingestionView } from '@embedpool/core/ingest';
import type { JobStore } from '@embedpool/core/jobs';
import type { Redis } from 'ioredis';

/** How one attempt went, as the record keeps it. */
export interface DeliveryOutcome {
  state: 'pending' | 'delivered' | 'dead';
  lastError?: string;
  lastStatus?: number;
  deliveredAt?: number;
}

export interface DeliveryRecord {
  /** The Embedpool-Event header. */
  event: string;
  /** Already delivered: a duplicate run must not POST again. */
  delivered: boolean;
  /** The JSON body; throws a DeliveryGoneReason error when its data is gone. */
  body(): Promise<string>;
  record(outcome: DeliveryOutcome): Promise<void>;
}

export interface DeliveryRecordSources {
  jobs: JobStore;
  ingestions: IngestionStore;
  /** For the inline results of `vectors` bodies. */
  redis: Redis;
  prefix: string;
}

/** What a delivery reports on, for logs (`log`) and messages (`name`). */
export function deliverySubject(data: DeliveryJobData): {
  log: { jobId: string } | { ingestionId: string };
  name: string;
} {
  return data.kind === INGESTION_DELIVERY_KIND
    ? { log: { ingestionId: data.ingestionId }, name: `ingestion ${data.ingestionId}` }
    : { log: { jobId: data.jobId }, name: `job ${data.jobId}` };
}

/** The record a delivery reports on, or null when it has expired. `attempt` counts from 1. */
export async function loadDeliveryRecord(
  sources: DeliveryRecordSources,
  data: DeliveryJobData,
  attempt: number,
): Promise<DeliveryRecord | null> {
  if (data.kind === INGESTION_DELIVERY_KIND) {
    const record = await sources.ingestions.get(data.ingestionId);
    if (!record) return null;
    return {
      event: EVENT_INGESTION_FINISHED,
      delivered: record.callback?.state === 'delivered',
      body: async () =>
        JSON.stringify({ event: EVENT_INGESTION_FINISHED, ingestion: ingestionView(record, 0) }),
      record: (outcome) =>
        sources.ingestions.setCallback(data.ingestionId, { url: data.url, attempts: attempt, ...outcome }),
    };
  }
  const record = await sources.jobs.get(data.jobId);
  if (!record) return null;
  // Cumulative over redrives: a redrive's first attempt continues the count of the run it replaces.
  const attempts = data.attemptOffset + attempt;
  return {
    event: EVENT_JOB_COMPLETED,
    delivered: record.delivery?.state === 'delivered',
    body: () => buildDeliveryBody(sources.redis, sources.prefix, record, data.kind),
    record: (outcome) =>
      sources.jobs.setDelivery(data.jobId, {
        deliveryId: data.deliveryId,
        url: data.url,
        attempts,
        ...outcome,
      }),
  };
}
