import { createHash, randomBytes } from 'node:crypto';

/** Ingestion's own queues: apart from `embed`, so chunk work has its own concurrency and never delays /score. */
export const INGEST_QUEUES = {
  /** Planner (listing), finalize and callback jobs: few, long-lived or small. */
  plan: 'ingest-plan',
  /** One job per chunk of up to INGEST_CHUNK_SIZE blobs. */
  chunks: 'ingest-chunks',
} as const;

export const INGEST_JOBS = {
  plan: 'plan',
  finalize: 'finalize',
  callback: 'callback',
  chunk: 'chunk',
} as const;

/** Redis keys of ingestions, under the deployment's prefix (BullMQ's own are `<prefix>:ingest-plan:*`...). */
export const ingestKeys = {
  record: (prefix: string, id: string) => `${prefix}:ingest:${id}`,
  /** Every ingestion id, in a sorted set ordered by id (ids sort by creation time). */
  all: (prefix: string) => `${prefix}:ingests`,
  /** Failed blob names (sorted set, lexicographic) and their details (hash name -> JSON). */
  failures: (prefix: string, id: string) => `${prefix}:ingest:${id}:failures`,
  failureInfo: (prefix: string, id: string) => `${prefix}:ingest:${id}:failinfo`,
  /** The failures a retry round re-queues, moved aside when the retry starts. */
  retrySnapshot: (prefix: string, id: string, round: number) => `${prefix}:ingest:${id}:retry:${round}`,
  retrySnapshotInfo: (prefix: string, id: string, round: number) =>
    `${prefix}:ingest:${id}:retry:${round}:info`,
  /** Bitmaps over chunk seq: committed (counted once), and written (has a shard or permanent failures). */
  committed: (prefix: string, id: string, round: number) => `${prefix}:ingest:${id}:committed:${round}`,
  written: (prefix: string, id: string, round: number) => `${prefix}:ingest:${id}:written:${round}`,
  /** Images done per committed chunk, scored by time: the last minute's throughput. */
  throughput: (prefix: string, id: string) => `${prefix}:ingest:${id}:tp`,
  /** One ingestion at a time writes an output (container + prefix). */
  outputLock: (prefix: string, outputKey: string) => `${prefix}:ingest-lock:${outputKey}`,
};

/** Every key of one ingestion except the lock and the `all` index, for expiry and clean-up. */
export function ingestionKeys(prefix: string, id: string, rounds: number): string[] {
  const out = [
    ingestKeys.record(prefix, id),
    ingestKeys.failures(prefix, id),
    ingestKeys.failureInfo(prefix, id),
    ingestKeys.throughput(prefix, id),
  ];
  for (let r = 0; r <= rounds; r++) {
    out.push(
      ingestKeys.retrySnapshot(prefix, id, r),
      ingestKeys.retrySnapshotInfo(prefix, id, r),
      ingestKeys.committed(prefix, id, r),
      ingestKeys.written(prefix, id, r),
    );
  }
  return out;
}

/**
 * `ing-<time base36>-<random hex>`: sorts by creation time (so listings page by id), short enough for
 * shard names, and never only digits (BullMQ refuses integer-like custom ids).
 */
export function newIngestionId(now = Date.now()): string {
  return `ing-${now.toString(36).padStart(9, '0')}-${randomBytes(4).toString('hex')}`;
}

export const INGESTION_ID = /^ing-[0-9a-z]{9}-[0-9a-f]{8}$/;

/** Chunk seq numbers are zero-padded so shard names list in seq order (a finalize walks them in step). */
const SEQ_DIGITS = 8;

/** The prefix shared by every chunk id of one round: `<id>-c` (round 0) or `<id>-r<round>-c`. */
export function chunkIdPrefix(ingestionId: string, round: number): string {
  return round === 0 ? `${ingestionId}-c` : `${ingestionId}-r${round}-c`;
}

/** Deterministic: a re-listed page re-creates the same chunk ids, so BullMQ and the shard names dedupe. */
export function chunkId(ingestionId: string, round: number, seq: number): string {
  return `${chunkIdPrefix(ingestionId, round)}${String(seq).padStart(SEQ_DIGITS, '0')}`;
}

export const ingestJobIds = {
  plan: (id: string, round: number) => `${id}-p${round}`,
  finalize: (id: string, round: number) => `${id}-f${round}`,
  callback: (id: string, round: number) => `${id}-cb${round}`,
};

/** `<container>/<prefix>` hashed: the lock key of an output. */
export function outputKey(container: string, prefix: string): string {
  return createHash('sha256').update(`${container}/${prefix}`).digest('hex').slice(0, 32);
}

export type ShardFormat = 'parquet' | 'jsonl';

/** Where everything of an output lives, relative to the container (the output prefix already applied). */
export class OutputLayout {
  constructor(readonly prefix: string) {}

  /** `prefix/name`, or `name` for an output at the container root. */
  path(rel: string): string {
    return this.prefix ? `${this.prefix}/${rel}` : rel;
  }

  /** The output-relative name of a path, as the manifest records it. */
  relative(path: string): string {
    return this.prefix && path.startsWith(`${this.prefix}/`) ? path.slice(this.prefix.length + 1) : path;
  }

  get manifest(): string {
    return this.path('_manifest.json');
  }

  shardRel(chunk: string, format: ShardFormat): string {
    return `shards/${chunk}.${format}`;
  }

  shard(chunk: string, format: ShardFormat): string {
    return this.path(this.shardRel(chunk, format));
  }

  /** Listing prefix of the shards of one round (names sort by seq). */
  shardsOfRound(ingestionId: string, round: number): string {
    return this.path(`shards/${chunkIdPrefix(ingestionId, round)}`);
  }

  chunkIndex(chunk: string): string {
    return this.path(`_index/chunks/${chunk}.json`);
  }

  indexRel(ingestionId: string, round: number): string {
    return `_index/index-${ingestionId}-r${round}.ndjson`;
  }

  supersededRel(ingestionId: string, round: number): string {
    return `_index/superseded/${ingestionId}-r${round}.ndjson`;
  }

  /** True for a blob this output wrote (so a source that contains the output never lists it as an image). */
  owns(name: string): boolean {
    const inside = this.prefix ? name.startsWith(`${this.prefix}/`) : true;
    if (!inside) return false;
    const rel = this.relative(name);
    return rel === '_manifest.json' || rel.startsWith('shards/') || rel.startsWith('_index/');
  }
}

/** A prefix as stored: no leading or trailing slashes. */
export function normalizePrefix(prefix: string | undefined): string {
  return (prefix ?? '').replace(/^\/+/, '').replace(/\/+$/, '');
}
