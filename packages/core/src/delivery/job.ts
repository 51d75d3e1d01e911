import { z } from 'zod';
import { type IngestionDeliveryData, ingestionDeliverySchema } from './ingestion-delivery';

/** The custom backoff type deliveries use; the delivery worker registers `deliveryBackoffStrategy` for it. */
export const DELIVERY_BACKOFF_TYPE = 'embedpool-callback';

/** What an async job's delivery carries: where to send and what to build. The body is built at send time. */
export const embedJobDeliverySchema = z.object({
  jobId: z.string().min(1).max(128),
  url: z.string().url(),
  kind: z.enum(['vectors', 'blob-pointer']),
  deliveryId: z.string().min(1),
  /** 0 for the first delivery, n for the n-th redrive. */
  redrive: z.number().int().min(0),
  /** Attempts made by earlier runs (before a redrive), so the record's count is cumulative. */
  attemptOffset: z.number().int().min(0).default(0),
});
export type EmbedJobDeliveryData = z.infer<typeof embedJobDeliverySchema>;

/** What a BullMQ job on the `deliveries` queue carries: an async job's delivery or an ingestion's. */
export const deliveryJobSchema = z.union([embedJobDeliverySchema, ingestionDeliverySchema]);
export type DeliveryJobData = EmbedJobDeliveryData | IngestionDeliveryData;
