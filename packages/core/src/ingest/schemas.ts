import { z } from 'zod';
import { normalizePrefix } from './names';

const CONTAINER = /^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;
const containerName = z.string().regex(CONTAINER, 'not a valid container name (3-63 of a-z, 0-9, -)');

/** POST /v1/ingestions */
export const createIngestionRequestSchema = z.object({
  source: z.object({
    /**
     * Which storage account: only `default`, the deployment's own (BLOB_CONNECTION_STRING, BLOB_SAS_URL or
     * BLOB_ACCOUNT_URL). Named so that more can be added without changing the request's shape.
     */
    connection: z.literal('default').default('default'),
    container: containerName,
    /** Listing prefix, as the service takes it: `photos/` lists `photos/...`; `photos` also `photos2/...`. */
    prefix: z
      .string()
      .max(1024)
      .default('')
      .transform((p) => p.replace(/^\/+/, '')),
    /** picomatch glob over the whole blob name, e.g. `**\/*.{jpg,png}`; `*` does not cross `/`. */
    glob: z.string().min(1).max(1024).optional(),
    /** File extensions to take, case-insensitive, with or without the dot: `["jpg", ".png"]`. */
    extensions: z
      .array(z.string().regex(/^\.?[A-Za-z0-9]{1,16}$/, 'an extension like "jpg"'))
      .min(1)
      .max(64)
      .optional(),
    /**
     * Instead of listing the container: a JSON lines (`.jsonl`/`.ndjson`) or CSV (`.csv`) blob naming the
     * inputs, one per line: blob names of `container` or http(s) image URLs (fetched under the same rules
     * and limits as job URLs). `container` defaults to the source container.
     */
    manifest: z.object({ container: containerName.optional(), name: z.string().min(1).max(1024) }).optional(),
  }),
  output: z.object({
    container: containerName,
    /** Where the shards, index and manifest go; the same output across runs makes them incremental. */
    prefix: z.string().max(512).default('').transform(normalizePrefix),
    format: z.enum(['parquet', 'jsonl']).default('parquet'),
  }),
  /** POSTed (signed, like job callbacks) when the ingestion reaches a final state. */
  callbackUrl: z.string().url().optional(),
  /**
   * Blobs that failed permanently in an earlier run (undecodable, too large) and have not changed since are
   * not downloaded again: they are listed as failures of this run (`carried`). `true` tries them again.
   */
  retryUnchangedFailures: z.boolean().default(false),
});
export type CreateIngestionRequest = z.infer<typeof createIngestionRequestSchema>;
export type IngestionSource = CreateIngestionRequest['source'];
export type IngestionOutput = CreateIngestionRequest['output'];

export const INGESTION_STATES = [
  'queued',
  'running',
  'cancelling',
  'finalizing',
  'completed',
  'partially_failed',
  'failed',
  'cancelled',
] as const;
export type IngestionState = (typeof INGESTION_STATES)[number];
export const FINAL_INGESTION_STATES: readonly IngestionState[] = [
  'completed',
  'partially_failed',
  'failed',
  'cancelled',
];
export const isFinalIngestionState = (s: IngestionState): boolean => FINAL_INGESTION_STATES.includes(s);

/**
 * One blob as a chunk carries it: name, etag and size from the listing (or the failure being retried).
 * From a manifest input the etag is '' and the size -1 (not listed); the name may be an http(s) URL.
 */
export const chunkBlobSchema = z.tuple([z.string().min(1), z.string(), z.number().int().min(-1)]);
export type ChunkBlob = z.infer<typeof chunkBlobSchema>;

export const chunkJobSchema = z.object({
  ingestionId: z.string().min(1),
  round: z.number().int().min(0),
  seq: z.number().int().min(0),
  blobs: z.array(chunkBlobSchema).min(1),
});
export type ChunkJobData = z.infer<typeof chunkJobSchema>;

export const planJobSchema = z.object({ ingestionId: z.string().min(1), round: z.number().int().min(0) });
export type PlanJobData = z.infer<typeof planJobSchema>;

/** Details of one failed blob, as GET .../failures shows them. */
export const blobFailureSchema = z.object({
  name: z.string(),
  etag: z.string(),
  size: z.number(),
  code: z.string(),
  message: z.string(),
  /** Retrying cannot help while the blob is unchanged (it does not decode, is too large, ...). */
  permanent: z.boolean(),
  /** The chunk that tried it; absent for a failure carried over from an earlier run. */
  chunk: z.string().optional(),
  /** Failed in an earlier run with the same etag and was not tried again. */
  carried: z.boolean().optional(),
  at: z.number(),
});
export type BlobFailure = z.infer<typeof blobFailureSchema>;

export const planCheckpointSchema = z.object({
  /** Pages committed so far in this round (a replayed page carries the same number and is refused). */
  page: z.number().int().min(0),
  /** Listing continuation token (round 0) or the last failure name taken (retry rounds); absent at start. */
  token: z.string().optional(),
  /** Next chunk seq. */
  seq: z.number().int().min(0),
  /** Blobs listed but not yet in a chunk (fewer than a chunk's worth). */
  buffer: z.array(chunkBlobSchema),
  /** Byte offset of the next unread line of the previous run's index (round 0 only). */
  indexOffset: z.number().int().min(0),
});
export type PlanCheckpoint = z.infer<typeof planCheckpointSchema>;

export const callbackStateSchema = z.object({
  url: z.string(),
  state: z.enum(['pending', 'delivered', 'dead']),
  attempts: z.number().int(),
  lastError: z.string().optional(),
  lastStatus: z.number().int().optional(),
  deliveredAt: z.number().optional(),
});
export type CallbackState = z.infer<typeof callbackStateSchema>;

export const ingestionErrorSchema = z.object({ code: z.string(), message: z.string() });
export type IngestionError = z.infer<typeof ingestionErrorSchema>;

/** A transient failure being retried with backoff (planner, chunk or finalize), until the next progress. */
export const retryNoteSchema = z.object({
  step: z.enum(['planning', 'chunk', 'finalizing']),
  code: z.string(),
  message: z.string(),
  attempt: z.number().int(),
  attempts: z.number().int(),
  at: z.number(),
});
export type RetryNote = z.infer<typeof retryNoteSchema>;

/** The base index a run compares against (the output's index when the run started). */
export const baseIndexSchema = z.object({ name: z.string(), etag: z.string().optional() });

export const ingestionRecordSchema = z.object({
  id: z.string(),
  state: z.enum(INGESTION_STATES),
  createdAt: z.number(),
  startedAt: z.number().optional(),
  finishedAt: z.number().optional(),
  updatedAt: z.number().optional(),
  request: createIngestionRequestSchema,
  outputKey: z.string(),
  /** 0 for the listing, n for the n-th retry-failed. */
  round: z.number().int().default(0),
  /** Which run of the output this is (1 for the first ingestion into it); set when planning starts. */
  run: z.number().int().optional(),
  model: z.string().optional(),
  dim: z.number().int().optional(),
  baseIndex: baseIndexSchema.optional(),
  checkpoint: planCheckpointSchema.optional(),
  listingDone: z.boolean().default(false),
  cancelRequested: z.boolean().default(false),
  plannerParked: z.boolean().default(false),
  /** Chunks created / committed in the current round. */
  planned: z.number().int().default(0),
  committed: z.number().int().default(0),
  finalizedRound: z.number().int().default(-1),
  discovered: z.number().int().default(0),
  skipped: z.number().int().default(0),
  queued: z.number().int().default(0),
  done: z.number().int().default(0),
  failed: z.number().int().default(0),
  carried: z.number().int().default(0),
  cancelledBlobs: z.number().int().default(0),
  missing: z.number().int().default(0),
  bytes: z.number().int().default(0),
  /** Listing requests made (replays included): a restarted planner that resumed adds at most one. */
  listCalls: z.number().int().default(0),
  manifest: z.string().optional(),
  error: ingestionErrorSchema.optional(),
  retrying: retryNoteSchema.optional(),
  callback: callbackStateSchema.optional(),
});
export type IngestionRecord = z.infer<typeof ingestionRecordSchema>;
