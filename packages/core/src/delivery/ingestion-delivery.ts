/**
 * An ingestion's completion callback as a delivery. It rides the same `deliveries` queue, delivery worker,
 * signing, URL policy, retries and metrics as job callbacks; only its body (the ingestion's final view)
 * and the record its outcome is written to differ.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

/** The `kind` of an ingestion's completion delivery (job deliveries are `vectors` or `blob-pointer`). */
export const INGESTION_DELIVERY_KIND = 'ingestion-finished';

/** What an ingestion's delivery job carries. The body is built at send time from the ingestion record. */
export const ingestionDeliverySchema = z.object({
  kind: z.literal(INGESTION_DELIVERY_KIND),
  ingestionId: z.string().min(1).max(128),
  /** The round that finished (a retry-failed run is round 1, 2, ...). */
  round: z.number().int().min(0),
  url: z.string().url(),
  deliveryId: z.string().min(1),
});
export type IngestionDeliveryData = z.infer<typeof ingestionDeliverySchema>;

/** The id receivers see in Embedpool-Delivery-Id: stable across attempts and workers, so a receiver can dedupe. */
export function ingestionDeliveryId(ingestionId: string, round: number): string {
  return `dlv_${createHash('sha256').update(`embedpool-ingestion:${ingestionId}:${round}`).digest('hex').slice(0, 32)}`;
}

/** The BullMQ job id of an ingestion's delivery: deterministic, so a replayed finalize queues no duplicate. */
export function ingestionDeliveryQueueJobId(ingestionId: string, round: number): string {
  return `${ingestionId}-cb${round}`;
}
