import { toStorageError } from '@embedpool/core/blob';
import { EmbedpoolError, ERROR_CODES, toEmbedpoolError } from '@embedpool/core/errors';
import {
  type BlobFailure,
  type ChunkContext,
  type ChunkJobData,
  chunkId,
  encodeShard,
  isFinalIngestionState,
  OutputLayout,
  SHARD_CONTENT_TYPES,
  type ShardRow,
} from '@embedpool/core/ingest';
import { type Job, UnrecoverableError } from 'bullmq';
import pLimit from 'p-limit';
import { downloadBlob } from './blob-download';
import type { IngestDeps } from './deps';
import { permanentStorageFailure } from './planner';
import { ingestionErrorCode, noteRetry } from './retry-note';

/** What `_index/chunks/<chunk>.json` holds: the chunk's rows and permanent failures, and its shard's ETag. */
export interface ChunkIndexFile {
  chunk: string;
  ingestionId: string;
  run: number;
  round: number;
  /** Relative to the output prefix; absent when the chunk has no rows. */
  shard?: string;
  shardEtag?: string;
  /** `[name, etag]` of each row, in shard order. */
  rows: [string, string][];
  /** `[name, etag, code]` of each permanent failure. */
  failures: [string, string, string][];
}

const URL_INPUT = /^https?:\/\//i;

/** Codes that mean this worker cannot embed now (shutting down): the whole chunk is retried elsewhere. */
const WORKER_CODES = new Set(['ENGINE_CLOSED']);

type BlobResult = { ok: true; row: ShardRow } | { ok: false; failure: BlobFailure; transient: boolean };

function failure(
  blob: ChunkJobData['blobs'][number],
  chunk: string,
  code: string,
  message: string,
  permanent: boolean,
): BlobFailure {
  return { name: blob[0], etag: blob[1], size: blob[2], code, message, permanent, chunk, at: Date.now() };
}

/** A download's failure: the storage service's code (`STORAGE_BlobNotFound`), or our own size cap's. */
function downloadFailure(err: unknown, blob: ChunkJobData['blobs'][number], chunk: string): BlobResult {
  if (err instanceof EmbedpoolError && !err.details?.storageCode) {
    return {
      ok: false,
      failure: failure(blob, chunk, err.code, err.message, err.permanent),
      transient: !err.permanent,
    };
  }
  const e = toStorageError(err, { op: 'download', blob: blob[0] });
  const code = typeof e.details?.storageCode === 'string' ? e.details.storageCode : 'Unknown';
  // Not permanent: a blob deleted or locked since it was listed may be back, changed, next run.
  return {
    ok: false,
    failure: failure(blob, chunk, `STORAGE_${code}`, e.message, false),
    transient: e.details?.transient === true,
  };
}

/** An embedding's failure: the image's own (permanent: it will fail again while unchanged) or not. */
function embedFailure(err: unknown, blob: ChunkJobData['blobs'][number], chunk: string): BlobResult {
  const e = toEmbedpoolError(err);
  if (WORKER_CODES.has(e.code)) throw e;
  return {
    ok: false,
    failure: failure(blob, chunk, e.code, e.message, ERROR_CODES[e.code].permanent),
    transient: !ERROR_CODES[e.code].permanent,
  };
}

/**
 * A chunk job: download its blobs (bounded, streamed, size-capped), embed them through the worker's
 * pipeline, write one shard named after the chunk (a retry overwrites it) and the chunk's index file, then
 * count the outcome once. Storage outages retry the whole chunk; bad images are failures of their own.
 */
export function createChunkProcessor(deps: IngestDeps) {
  return async (job: Job<ChunkJobData>): Promise<string> => {
    // Validated on dequeue by the dispatcher (ingest-worker.ts).
    const data = job.data;
    const chunk = chunkId(data.ingestionId, data.round, data.seq);
    const ctx = await deps.store.chunkContext(data.ingestionId);
    if (!ctx) return 'missing';
    if (ctx.round !== data.round || isFinalIngestionState(ctx.state)) return 'stale';
    const log = deps.logger.child({ ingestionId: data.ingestionId, chunk });

    // Cancelled, or stopped by a permanent error another chunk found: drop the chunk, count it once.
    if (ctx.cancelRequested || ctx.state === 'cancelling') {
      return commit(deps, ctx, data, chunk, { cancelled: true });
    }
    if (await deps.store.isCommitted(data.ingestionId, data.round, data.seq)) {
      // Done before (the job was re-created by a replayed page): only re-check completion.
      return commit(deps, ctx, data, chunk, { cancelled: true });
    }
    if (job.stalledCounter >= deps.settings.INGEST_MAX_CHUNK_CRASHES) {
      log.error({ crashes: job.stalledCounter }, 'chunk crashed its worker repeatedly: recorded as failed');
      return commit(deps, ctx, data, chunk, {
        failures: data.blobs.map((b) =>
          failure(
            b,
            chunk,
            'WORKER_CRASHED',
            `the worker died ${job.stalledCounter} times on this chunk`,
            false,
          ),
        ),
      });
    }

    const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    try {
      return await process(deps, ctx, data, chunk, lastAttempt);
    } catch (err) {
      const e = toEmbedpoolError(err);
      // The output container gone, or credentials refused: no attempt of any chunk can succeed.
      const permanent = WORKER_CODES.has(e.code) ? undefined : permanentStorageFailure(err, 'chunk');
      const last = err instanceof UnrecoverableError || lastAttempt || permanent !== undefined;
      const code = ingestionErrorCode(e);
      if (!last || WORKER_CODES.has(e.code)) {
        log.warn({ err: e.message, attempt: job.attemptsMade + 1 }, 'chunk attempt failed');
        if (!WORKER_CODES.has(e.code))
          await noteRetry(deps.store, data.ingestionId, 'chunk', code, e.message, job);
        throw err;
      }
      if (permanent) {
        // Stop the whole ingestion (as a cancel does) so it ends `failed` with this error instead of
        // running every remaining chunk into the same wall.
        log.error({ error: permanent }, 'permanent storage failure: stopping the ingestion');
        await deps.store.abort(data.ingestionId, permanent);
        await deps.queues.wakePlanner({ ingestionId: data.ingestionId, round: data.round });
      }
      // Out of attempts: every blob of the chunk becomes a (retryable) failure so the run can finish.
      log.error({ err: e.message, code }, 'chunk failed for good');
      return commit(deps, ctx, data, chunk, {
        failures: data.blobs.map((b) => failure(b, chunk, code, e.message, false)),
      });
    }
  };
}

async function process(
  deps: IngestDeps,
  ctx: ChunkContext,
  data: ChunkJobData,
  chunk: string,
  lastAttempt: boolean,
): Promise<string> {
  const limit = pLimit(deps.settings.INGEST_BLOB_CONCURRENCY);
  const results = await Promise.all(data.blobs.map((blob) => limit(() => embedBlob(deps, ctx, blob, chunk))));
  const outage = results.find((r) => !r.ok && r.transient && r.failure.code.startsWith('STORAGE_'));
  if (outage && !outage.ok && !lastAttempt) {
    // Storage failing after the SDK's own retries: retry the whole chunk (BullMQ backs off); on the last
    // attempt these blobs become failures that retry-failed can queue again.
    throw new EmbedpoolError('UNAVAILABLE', `source storage failing: ${outage.failure.message}`, {
      details: { storageCode: outage.failure.code.replace(/^STORAGE_/, ''), transient: true },
    });
  }
  const rows = results.flatMap((r) => (r.ok ? [r.row] : []));
  const failures = results.flatMap((r) => (r.ok ? [] : [r.failure]));
  const permanent = failures.filter((f) => f.permanent);
  const written = rows.length > 0 || permanent.length > 0;
  if (written) await writeChunkOutput(deps, ctx, data, chunk, rows, permanent);
  return commit(deps, ctx, data, chunk, {
    done: rows.length,
    bytes: rows.reduce((n, r) => n + r.size, 0),
    written,
    failures,
  });
}

/** One blob (or manifest URL) of the chunk to its row, or to its failure. */
async function embedBlob(
  deps: IngestDeps,
  ctx: ChunkContext,
  blob: ChunkJobData['blobs'][number],
  chunk: string,
): Promise<BlobResult> {
  const req = ctx.request;
  const [name, , listedSize] = blob;
  if (listedSize > deps.maxImageBytes) {
    return {
      ok: false,
      failure: failure(
        blob,
        chunk,
        'IMAGE_TOO_LARGE',
        `blob is ${listedSize} bytes, over MAX_IMAGE_BYTES (${deps.maxImageBytes})`,
        true,
      ),
      transient: false,
    };
  }
  if (listedSize === 0) {
    return {
      ok: false,
      failure: failure(blob, chunk, 'IMAGE_EMPTY', 'blob is empty', true),
      transient: false,
    };
  }
  if (req.source.manifest && URL_INPUT.test(name)) {
    // A URL from a manifest input: fetched by the pipeline under the same address rules, redirect
    // and size limits as job URLs. Its row has no ETag and the size is not known.
    try {
      const vector = await deps.pipeline.embed({ kind: 'url', url: name });
      return { ok: true, row: { name, etag: '', size: 0, vector } };
    } catch (err) {
      return embedFailure(err, blob, chunk);
    }
  }
  let got: Awaited<ReturnType<typeof downloadBlob>>;
  try {
    const source = deps.blob.getContainerClient(req.source.container);
    got = await downloadBlob(source, name, { maxBytes: deps.maxImageBytes });
  } catch (err) {
    return downloadFailure(err, blob, chunk);
  }
  try {
    const vector = await deps.pipeline.embed({ kind: 'bytes', bytes: got.bytes });
    return { ok: true, row: { name, etag: got.etag, size: got.size, vector } };
  } catch (err) {
    // The failure names the ETag of the bytes that failed, as the index must.
    return embedFailure(err, [name, got.etag, got.size], chunk);
  }
}

/** The chunk's shard (when it has rows), then its index file: rows with the shard's ETag, permanent failures. */
async function writeChunkOutput(
  deps: IngestDeps,
  ctx: ChunkContext,
  data: ChunkJobData,
  chunk: string,
  rows: ShardRow[],
  permanent: BlobFailure[],
): Promise<void> {
  const req = ctx.request;
  const layout = new OutputLayout(req.output.prefix);
  const out = deps.blob.getContainerClient(req.output.container);
  const file: ChunkIndexFile = {
    chunk,
    ingestionId: data.ingestionId,
    run: ctx.run,
    round: data.round,
    rows: rows.map((r) => [r.name, r.etag]),
    failures: permanent.map((f) => [f.name, f.etag, f.code]),
  };
  if (rows.length > 0) {
    const dim = rows[0]!.vector.length;
    const body = encodeShard(req.output.format, rows, {
      container: req.source.container,
      modelId: deps.modelId,
      dim,
      ingestionId: data.ingestionId,
      run: ctx.run,
      chunk,
    });
    const shardName = layout.shard(chunk, req.output.format);
    // Overwrites whatever an earlier attempt of this chunk left: one shard per chunk, ever.
    const res = await out
      .getBlockBlobClient(shardName)
      .uploadData(body, { blobHTTPHeaders: { blobContentType: SHARD_CONTENT_TYPES[req.output.format] } })
      .catch((err: unknown) => {
        throw toStorageError(err, { op: 'upload', container: req.output.container, blob: shardName });
      });
    file.shard = layout.shardRel(chunk, req.output.format);
    file.shardEtag = normalize(res.etag);
  }
  const indexName = layout.chunkIndex(chunk);
  const text = Buffer.from(JSON.stringify(file));
  await out
    .getBlockBlobClient(indexName)
    .uploadData(text, { blobHTTPHeaders: { blobContentType: 'application/json' } })
    .catch((err: unknown) => {
      throw toStorageError(err, { op: 'upload', container: req.output.container, blob: indexName });
    });
}

function normalize(etag: string | undefined): string {
  return (etag ?? '').replace(/^"(.*)"$/, '$1');
}

async function commit(
  deps: IngestDeps,
  ctx: ChunkContext,
  data: ChunkJobData,
  chunk: string,
  o: { cancelled?: boolean; done?: number; bytes?: number; written?: boolean; failures?: BlobFailure[] },
): Promise<string> {
  const res = await deps.store.commitChunk(ctx, {
    round: data.round,
    seq: data.seq,
    blobs: data.blobs.length,
    done: o.done ?? 0,
    bytes: o.bytes ?? 0,
    written: o.written ?? false,
    cancelled: o.cancelled ?? false,
    failures: o.failures ?? [],
    wakeBelow: Math.floor(deps.settings.INGEST_MAX_QUEUED_CHUNKS / 2),
    chunk,
  });
  if (res.status === 'ok') {
    deps.metrics?.chunks.inc({ outcome: o.cancelled ? 'cancelled' : 'done' });
    if (o.done) deps.metrics?.images.inc({ outcome: 'done' }, o.done);
    if (o.failures?.length) deps.metrics?.images.inc({ outcome: 'failed' }, o.failures.length);
  }
  if (res.complete) await deps.queues.addFinalize({ ingestionId: data.ingestionId, round: data.round });
  if (res.wake) await deps.queues.wakePlanner({ ingestionId: data.ingestionId, round: data.round });
  return res.status;
}
