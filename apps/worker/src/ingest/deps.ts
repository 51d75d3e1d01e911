import type { BlobServiceClient } from '@azure/storage-blob';
import type { DeliveryQueue } from '@embedpool/core/delivery';
import type { IngestionStore, IngestQueues, IngestSettings } from '@embedpool/core/ingest';
import type { Logger } from '@embedpool/core/logger';
import type { Counter } from 'prom-client';
import type { EmbedPipeline } from '../embed-pipeline';

/** Everything the ingestion processors share. */
export interface IngestDeps {
  store: IngestionStore;
  queues: IngestQueues;
  /** The deployment's storage account: sources are read and outputs written through it. */
  blob: BlobServiceClient;
  settings: IngestSettings;
  /** The worker's pipeline: chunk images share its decode limit and micro-batcher with all other work. */
  pipeline: EmbedPipeline;
  modelId: string;
  /** The model's output size (0 until known: then the vectors' length is used). */
  dim: () => number;
  /** The preprocessor config, recorded in the manifest. */
  preprocessor: unknown;
  maxImageBytes: number;
  logger: Logger;
  /** True once the worker is shutting down: the planner hands its job back at the next page. */
  closing: () => boolean;
  /** Where completion callbacks are queued (absent without CALLBACK_SECRET). */
  deliveries?: DeliveryQueue;
  metrics?: IngestMetrics;
}

export interface IngestMetrics {
  chunks: Counter<'outcome'>;
  images: Counter<'outcome'>;
  listPages: Counter<string>;
}
