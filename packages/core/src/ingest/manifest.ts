import type { ShardFormat } from './names';

/** One shard file of an output. */
export interface ManifestShard {
  /** Relative to the output prefix: `shards/<chunk id>.<format>`. */
  name: string;
  chunk: string;
  run: number;
  rows: number;
  bytes: number;
  etag?: string;
  /** The shard's layout (SHARD_SCHEMA_VERSION); absent for shards written before version 2 (so 1). */
  schemaVersion?: number;
  /**
   * Rows of this shard that a later run replaced (the blob changed and was embedded again). When it equals
   * `rows` the whole shard is superseded and readers can skip it.
   */
  supersededRows: number;
}

export interface ManifestRun {
  run: number;
  ingestionId: string;
  /** 1 + the number of retry-failed rounds folded into this run. */
  rounds: number;
  state: string;
  createdAt: string;
  finishedAt: string;
  source: { container: string; prefix: string; glob?: string; extensions?: string[] };
  counts: {
    discovered: number;
    /** Unchanged since an earlier run: not downloaded. */
    skipped: number;
    /** Embedded and written by this run. */
    embedded: number;
    failed: number;
    /** Of `failed`: permanent failures of an earlier run whose blobs did not change (not tried again). */
    carriedFailures: number;
    cancelled: number;
    /** Blobs with a vector from an earlier run that the source no longer lists (their rows stay). */
    missingFromSource: number;
    /** Rows of earlier runs this run replaced. */
    supersededRows: number;
  };
  /** Shards this run wrote (names relative to the output prefix). */
  shards: string[];
  /** Files of lines `{"shard","blob_name","etag"}` naming each row this run superseded (absent when none). */
  superseded?: string[];
}

/**
 * `_manifest.json` at the output prefix: written last, after the shards and the index it points to, so a
 * reader that starts from it sees a consistent output.
 */
export interface IngestionManifest {
  format: 'embedpool.ingestion-output';
  version: 1;
  model: string;
  dim: number;
  /** The Hugging Face preprocessor config the vectors were made with. */
  preprocessing: unknown;
  shardFormat: ShardFormat;
  /**
   * The layout of the shards the latest run wrote (2: `id` column, Arrow schema); older shards of the
   * output keep theirs (`shards[].schemaVersion`, absent = 1). Absent in manifests written before version 2.
   */
  shardSchemaVersion?: number;
  columns: readonly { name: string; type: string; about: string }[];
  /** The index of the latest row (or permanent failure) per blob name; see docs/ingestion.md. */
  index: { name: string; entries: number; vectors: number; failures: number; bytes: number; etag?: string };
  counts: {
    /** Rows in all shards. */
    rows: number;
    /** Rows that are the latest for their blob (what a reader keeps after dedupe). */
    liveRows: number;
    supersededRows: number;
    shards: number;
  };
  shards: ManifestShard[];
  runs: ManifestRun[];
  updatedAt: string;
}

export const MANIFEST_FORMAT = 'embedpool.ingestion-output';
