import { z } from 'zod';

const int = (min = 0) => z.coerce.number().int().min(min);

/**
 * The environment variables of bulk ingestion. Kept here (not in config/schema.ts) so the module stands on
 * its own; the service's `envSchema` spreads `ingestEnvSchema.shape` so they are parsed (and named in
 * errors) with every other variable at boot.
 */
export const ingestEnvSchema = z.object({
  /** Blobs per chunk job (one output shard each). 64-256 keeps Redis work per image tiny and shards sane. */
  INGEST_CHUNK_SIZE: int(1).max(4096).default(128),
  /** Blobs asked for per listing request (the service caps a page at 5,000). */
  INGEST_LIST_PAGE_SIZE: int(1).max(5000).default(500),
  /** Back-pressure: the planner stops listing while an ingestion has more chunks than this queued or running. */
  INGEST_MAX_QUEUED_CHUNKS: int(1).default(64),
  /** Chunk jobs one worker runs at once. */
  INGEST_CHUNK_CONCURRENCY: int(1).default(2),
  /** Downloads in flight per chunk (their images then queue for the shared decode limit and batcher). */
  INGEST_BLOB_CONCURRENCY: int(1).default(16),
  /** Planner and finalize jobs one worker runs at once. */
  INGEST_PLAN_CONCURRENCY: int(1).default(4),
  /** Longest a parked planner sleeps before it looks again (it is woken earlier when chunks complete). */
  INGEST_PLAN_PARK_MS: int(10).default(5_000),
  /** Tries per planner, chunk and finalize job before its failure is recorded. */
  INGEST_ATTEMPTS: int(1).max(50).default(5),
  /** First retry delay of a planner, chunk or finalize job (exponential). */
  INGEST_BACKOFF_MS: int(1).default(1_000),
  /** A chunk whose worker died this many times is recorded as failed (a poison image must not loop). */
  INGEST_MAX_CHUNK_CRASHES: int(1).max(100).default(3),
});

export type IngestSettings = z.infer<typeof ingestEnvSchema>;
export const INGEST_ENV_NAMES = Object.keys(ingestEnvSchema.shape) as (keyof IngestSettings)[];
export const DEFAULT_INGEST_SETTINGS: IngestSettings = ingestEnvSchema.parse({});

/**
 * The ingestion settings from a parsed config (once `envSchema` includes `ingestEnvSchema.shape`) or a raw
 * environment; values absent from both take their defaults. `overrides` win (tests, benchmarks).
 */
export function ingestSettingsFrom(source: object, overrides: Partial<IngestSettings> = {}): IngestSettings {
  const raw: Record<string, unknown> = {};
  const from = source as Record<string, unknown>;
  for (const name of INGEST_ENV_NAMES) if (from[name] !== undefined) raw[name] = from[name];
  return { ...ingestEnvSchema.parse(raw), ...overrides };
}
