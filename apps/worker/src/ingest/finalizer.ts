import type { BlobItem, ContainerClient } from '@azure/storage-blob';
import { storageStatus } from '@embedpool/core/blob';
import { toEmbedpoolError } from '@embedpool/core/errors';
import {
  BlobTextWriter,
  chunkId,
  compareNames,
  decodeShard,
  encodeIndexLine,
  IndexCursor,
  type IndexEntry,
  type IngestionError,
  type IngestionManifest,
  type IngestionRecord,
  type IngestionState,
  isFinalIngestionState,
  MANIFEST_FORMAT,
  type ManifestRun,
  type ManifestShard,
  OutputLayout,
  SHARD_COLUMNS,
  SHARD_SCHEMA_VERSION,
} from '@embedpool/core/ingest';
import type { Job } from 'bullmq';
import { normalizeEtag } from './blob-download';
import { queueIngestionCallback } from './callback';
import type { ChunkIndexFile } from './chunk-processor';
import type { IngestDeps } from './deps';
import { permanentStorageFailure, readManifest } from './planner';
import { ingestionErrorCode, noteRetry } from './retry-note';

/** The chunk entries of a round were not in name order (a listing order this code does not expect). */
class OrderError extends Error {}

const PREFETCH = 8;

/** Yields `tasks` results in order, running up to `window` ahead. */
async function* ordered<T>(
  count: number,
  task: (i: number) => Promise<T>,
  window: number,
): AsyncGenerator<T> {
  const inflight: Promise<T>[] = [];
  let next = 0;
  const start = () => {
    const p = task(next++);
    p.catch(() => {});
    inflight.push(p);
  };
  while (next < count && inflight.length < window) start();
  while (inflight.length > 0) {
    const value = await inflight.shift()!;
    if (next < count) start();
    yield value;
  }
}

async function readJson<T>(out: ContainerClient, name: string): Promise<T | undefined> {
  try {
    const buf = await out.getBlobClient(name).downloadToBuffer(0, undefined, { maxRetryRequestsPerBlock: 3 });
    return JSON.parse(buf.toString('utf8')) as T;
  } catch (err) {
    if (storageStatus(err) === 404) return undefined;
    throw err;
  }
}

function finalState(record: IngestionRecord): { state: IngestionState; error?: IngestionError } {
  if (record.cancelRequested) return { state: 'cancelled' };
  if (record.error) return { state: 'failed', error: record.error };
  if (record.failed > 0 && record.done + record.skipped === 0) {
    return {
      state: 'failed',
      error: { code: 'ALL_BLOBS_FAILED', message: `all ${record.failed} blobs failed (see /failures)` },
    };
  }
  return { state: record.failed > 0 ? 'partially_failed' : 'completed' };
}

interface MergeResult {
  index: IngestionManifest['index'];
  shards: ManifestShard[];
  supersededByChunk: Map<string, number>;
  supersededRows: number;
  supersededFile?: string;
  repaired: number;
  lost: number;
}

/** What reading a round's chunk index files needs; `result` collects the shards, repairs and losses. */
interface ChunkSource {
  record: IngestionRecord;
  out: ContainerClient;
  layout: OutputLayout;
  written: number[];
  format: IngestionRecord['request']['output']['format'];
  run: number;
  log: IngestDeps['logger'];
  result: MergeResult;
}

/**
 * The round's index entries, chunk by chunk (each chunk's in name order), checking each chunk file
 * against its shard in one listing of the round's shards: a missing shard's rows are lost (embedded again
 * next run), a shard rewritten after its index file is read back and trusted.
 */
async function* chunkEntries(src: ChunkSource): AsyncGenerator<IndexEntry> {
  const { record, out, layout, written, format, run, log, result } = src;
  const listing = out
    .listBlobsFlat({ prefix: layout.shardsOfRound(record.id, record.round) })
    [Symbol.asyncIterator]();
  let head: IteratorResult<BlobItem> = await listing.next();
  const files = ordered(
    written.length,
    (i) => readJson<ChunkIndexFile>(out, layout.chunkIndex(chunkId(record.id, record.round, written[i]!))),
    PREFETCH,
  );
  for await (const file of files) {
    if (!file) continue;
    let rows = file.rows;
    if (file.shard) {
      const full = layout.path(file.shard);
      while (!head.done && compareNames(head.value.name, full) < 0) head = await listing.next();
      const listed = !head.done && head.value.name === full ? head.value : undefined;
      if (!listed) {
        log.warn(
          { shard: full },
          'shard named by a chunk index is missing: its blobs will be embedded again next run',
        );
        result.lost += rows.length;
        rows = [];
      } else {
        const etag = normalizeEtag(listed.properties.etag);
        if (etag !== file.shardEtag) {
          const bytes = await out
            .getBlobClient(full)
            .downloadToBuffer(0, undefined, { maxRetryRequestsPerBlock: 3 });
          rows = (await decodeShard(format, bytes, { vectors: false })).map((r) => [r.name, r.etag]);
          result.repaired++;
          log.warn({ shard: full }, 'shard was rewritten after its index: index rebuilt from the shard');
        }
        result.shards.push({
          name: file.shard,
          chunk: file.chunk,
          run,
          rows: rows.length,
          bytes: listed.properties.contentLength ?? 0,
          etag,
          schemaVersion: SHARD_SCHEMA_VERSION,
          supersededRows: 0,
        });
      }
    }
    const withRow = new Set(rows.map((r) => r[0]));
    const entries: IndexEntry[] = [
      ...rows.map(([name, etag]) => ({ name, etag, shard: file.chunk })),
      ...file.failures
        .filter(([name]) => !withRow.has(name))
        .map(([name, etag, code]) => ({ name, etag, failure: code })),
    ];
    entries.sort((a, b) => compareNames(a.name, b.name));
    yield* entries;
  }
}

/** A round whose chunks are in no name order (a manifest run): all its entries, sorted in memory. */
async function* sortedInMemory(src: ChunkSource): AsyncGenerator<IndexEntry> {
  const all: IndexEntry[] = [];
  for await (const e of chunkEntries(src)) all.push(e);
  all.sort((a, b) => compareNames(a.name, b.name));
  // Two entries for one name cannot come from one round; if they do, keep the later.
  for (let i = 0; i < all.length; i++) if (all[i + 1]?.name !== all[i]!.name) yield all[i]!;
}

/**
 * Merges the output's index with the entries of this round's chunks into a new index (both in name order,
 * streamed: memory stays flat however large the output). A chunk entry replaces the base entry of the same
 * name; a replaced row is superseded and listed. Each chunk's index file is checked against its shard's
 * ETag from a listing of the round's shards; a shard rewritten after its index (two attempts racing) is read
 * back and trusted instead.
 */
async function mergeIndex(
  deps: IngestDeps,
  record: IngestionRecord,
  out: ContainerClient,
  layout: OutputLayout,
  baseName: string | undefined,
  written: number[],
  newIndexRel: string,
  inMemory: boolean,
): Promise<MergeResult> {
  const req = record.request;
  const format = req.output.format;
  const run = record.run ?? 0;
  const log = deps.logger.child({ ingestionId: record.id, round: record.round });
  const result: MergeResult = {
    index: { name: newIndexRel, entries: 0, vectors: 0, failures: 0, bytes: 0 },
    shards: [],
    supersededByChunk: new Map(),
    supersededRows: 0,
    repaired: 0,
    lost: 0,
  };

  const writer = new BlobTextWriter(out.getBlockBlobClient(layout.path(newIndexRel)), 'application/x-ndjson');
  let superseded: BlobTextWriter | undefined;
  const supersededRel = layout.supersededRel(record.id, record.round);
  const base = new IndexCursor(baseName ? out.getBlobClient(layout.path(baseName)) : undefined, 0);
  const source: ChunkSource = { record, out, layout, written, format, run, log, result };
  const chunks = inMemory ? sortedInMemory(source) : chunkEntries(source);
  const emit = async (e: IndexEntry) => {
    await writer.write(encodeIndexLine(e));
    result.index.entries++;
    if (e.shard !== undefined) result.index.vectors++;
    else result.index.failures++;
  };
  try {
    let b = await base.peek();
    let c = (await chunks.next()).value as IndexEntry | undefined;
    let prev: string | undefined;
    while (b || c) {
      if (c && prev !== undefined && compareNames(c.name, prev) <= 0) {
        throw new OrderError(
          `chunk entries out of order: ${JSON.stringify(prev)} then ${JSON.stringify(c.name)}`,
        );
      }
      if (!c || (b && compareNames(b.name, c.name) < 0)) {
        await emit(b!);
        await base.advance();
        b = await base.peek();
        continue;
      }
      if (b && b.name === c.name) {
        if (b.shard !== undefined && b.shard !== c.shard) {
          superseded ??= new BlobTextWriter(
            out.getBlockBlobClient(layout.path(supersededRel)),
            'application/x-ndjson',
          );
          await superseded.write(
            `${JSON.stringify({ shard: layout.shardRel(b.shard, format), blob_name: b.name, etag: b.etag })}\n`,
          );
          result.supersededByChunk.set(b.shard, (result.supersededByChunk.get(b.shard) ?? 0) + 1);
          result.supersededRows++;
        }
        await base.advance();
        b = await base.peek();
      }
      await emit(c);
      prev = c.name;
      c = (await chunks.next()).value as IndexEntry | undefined;
    }
    const done = await writer.close();
    result.index.bytes = done.bytes;
    if (done.etag) result.index.etag = normalizeEtag(done.etag);
    if (superseded) {
      await superseded.close();
      result.supersededFile = supersededRel;
    }
    return result;
  } catch (err) {
    writer.abort();
    superseded?.abort();
    await chunks.return(undefined).catch(() => {});
    throw err;
  } finally {
    await base.close();
  }
}

/** This run's entry in the manifest: `before` is its entry from an earlier round, if any. */
function manifestRun(
  record: IngestionRecord,
  state: IngestionState,
  before: ManifestRun | undefined,
  merged: MergeResult,
  runsSoFar: number,
  now: string,
): ManifestRun {
  const req = record.request;
  return {
    run: record.run ?? runsSoFar + 1,
    ingestionId: record.id,
    rounds: record.round + 1,
    state,
    createdAt: new Date(record.createdAt).toISOString(),
    finishedAt: now,
    source: {
      container: req.source.container,
      prefix: req.source.prefix,
      ...(req.source.glob ? { glob: req.source.glob } : {}),
      ...(req.source.extensions ? { extensions: req.source.extensions } : {}),
    },
    counts: {
      discovered: record.discovered,
      skipped: record.skipped,
      embedded: record.done,
      failed: record.failed,
      carriedFailures: record.carried,
      cancelled: record.cancelledBlobs,
      missingFromSource: record.missing,
      supersededRows: (before?.counts.supersededRows ?? 0) + merged.supersededRows,
    },
    shards: [...(before?.shards ?? []), ...merged.shards.map((s) => s.name)],
    ...(before?.superseded || merged.supersededFile
      ? {
          superseded: [
            ...(before?.superseded ?? []),
            ...(merged.supersededFile ? [merged.supersededFile] : []),
          ],
        }
      : {}),
  };
}

/**
 * Folds a finished round into the output: the merged index, then `_manifest.json` (the commit point:
 * written last, so a reader never sees shards the manifest does not list, nor an index ahead of it).
 * Safe to repeat: a manifest that already has this round is left as it is.
 */
async function commitRound(
  deps: IngestDeps,
  record: IngestionRecord,
  out: ContainerClient,
  layout: OutputLayout,
  previous: IngestionManifest | undefined,
  written: number[],
  state: IngestionState,
): Promise<IngestionManifest> {
  const req = record.request;
  const log = deps.logger.child({ ingestionId: record.id, round: record.round });
  const baseName = previous?.index?.name;
  const rewrite = written.length > 0 || !previous;
  const newIndexRel = rewrite ? layout.indexRel(record.id, record.round) : baseName!;
  let merged: MergeResult;
  if (rewrite) {
    try {
      merged = await mergeIndex(deps, record, out, layout, baseName, written, newIndexRel, false);
    } catch (err) {
      if (!(err instanceof OrderError)) throw err;
      log.warn({ err: err.message }, 'listing order differs from the index order: merging in memory');
      merged = await mergeIndex(deps, record, out, layout, baseName, written, newIndexRel, true);
    }
  } else {
    merged = {
      index: previous!.index,
      shards: [],
      supersededByChunk: new Map(),
      supersededRows: 0,
      repaired: 0,
      lost: 0,
    };
  }

  const now = new Date().toISOString();
  const shards = (previous?.shards ?? []).map((s) => ({
    ...s,
    supersededRows: s.supersededRows + (merged.supersededByChunk.get(s.chunk) ?? 0),
  }));
  shards.push(...merged.shards);
  const runs = [...(previous?.runs ?? [])];
  const existing = runs.findIndex((r) => r.ingestionId === record.id);
  const before = existing >= 0 ? runs[existing] : undefined;
  const runEntry = manifestRun(record, state, before, merged, runs.length, now);
  if (existing >= 0) runs[existing] = runEntry;
  else runs.push(runEntry);
  const rows = shards.reduce((n, s) => n + s.rows, 0);
  const supersededRows = shards.reduce((n, s) => n + s.supersededRows, 0);
  const manifest: IngestionManifest = {
    format: MANIFEST_FORMAT,
    version: 1,
    model: previous?.model ?? deps.modelId,
    dim: previous?.dim || record.dim || deps.dim(),
    preprocessing: previous?.preprocessing ?? deps.preprocessor,
    shardFormat: req.output.format,
    shardSchemaVersion: SHARD_SCHEMA_VERSION,
    columns: SHARD_COLUMNS,
    index: merged.index,
    counts: { rows, liveRows: merged.index.vectors, supersededRows, shards: shards.length },
    shards,
    runs,
    updatedAt: now,
  };
  await out
    .getBlockBlobClient(layout.manifest)
    .uploadData(Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), {
      blobHTTPHeaders: { blobContentType: 'application/json' },
    });
  if (baseName && baseName !== newIndexRel) {
    // The previous index is no longer named by the manifest; its superseded lists stay.
    await out
      .getBlobClient(layout.path(baseName))
      .deleteIfExists()
      .catch(() => {});
  }
  log.info(
    {
      run: runEntry.run,
      shards: merged.shards.length,
      superseded: merged.supersededRows,
      repaired: merged.repaired,
      lost: merged.lost,
    },
    'round committed to the manifest',
  );
  return manifest;
}

/** The finalize job: commit the round to the output, then the final state (and the callback). */
export async function runFinalize(deps: IngestDeps, ingestionId: string, round: number): Promise<string> {
  const record = await deps.store.get(ingestionId);
  if (!record) return 'missing';
  if (record.round !== round) return 'stale';
  if (isFinalIngestionState(record.state)) {
    if (record.finalizedRound >= round && record.request.callbackUrl && !record.callback) {
      await queueIngestionCallback(deps, ingestionId, round);
    }
    return record.state;
  }
  if (record.state !== 'finalizing') return 'not-ready';
  const req = record.request;
  const layout = new OutputLayout(req.output.prefix);
  const out = deps.blob.getContainerClient(req.output.container);
  const { state, error } = finalState(record);
  let manifestWritten = false;
  if (record.run !== undefined) {
    const found = await readManifest(out, layout);
    const previous = found?.manifest;
    const before = previous?.runs.find((r) => r.ingestionId === record.id);
    if (before && before.rounds >= round + 1) {
      manifestWritten = true;
    } else {
      const written = await deps.store.writtenChunks(ingestionId, round);
      // A run that wrote nothing and ended early leaves no trace in the output.
      const nothing = written.length === 0 && !before && (state === 'cancelled' || state === 'failed');
      if (!nothing) {
        await commitRound(deps, record, out, layout, previous, written, state);
        manifestWritten = true;
      }
    }
  }
  const res = await deps.store.finish(record, {
    state,
    ...(manifestWritten ? { manifest: layout.manifest } : {}),
    ...(error ? { error } : {}),
  });
  deps.logger.info(
    { ingestionId, round, state, done: record.done, failed: record.failed, skipped: record.skipped, res },
    'ingestion finished',
  );
  if (res === 'ok' && req.callbackUrl) await queueIngestionCallback(deps, ingestionId, round);
  return state;
}

/**
 * The finalize job with its last resort: when it keeps failing (storage down past every retry), or fails
 * in a way no retry can fix (the output container was deleted, credentials refused), the ingestion ends
 * `failed` with the error rather than staying `finalizing`, and its output is released. Its shards stay,
 * unlisted: the next run into the output embeds those blobs again (the manifest never names a shard twice).
 */
export async function finalizeOrGiveUp(
  deps: IngestDeps,
  job: Job,
  ingestionId: string,
  round: number,
): Promise<string> {
  try {
    return await runFinalize(deps, ingestionId, round);
  } catch (err) {
    const permanent = permanentStorageFailure(err, 'finalize');
    const last = permanent !== undefined || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    const e = toEmbedpoolError(err);
    const code = permanent?.code ?? ingestionErrorCode(e);
    deps.logger.warn({ ingestionId, round, err: e.message, code, last }, 'finalize attempt failed');
    if (!last) {
      await noteRetry(deps.store, ingestionId, 'finalizing', code, e.message, job);
      throw err;
    }
    const record = await deps.store.get(ingestionId);
    if (record?.state === 'finalizing' && record.round === round) {
      await deps.store.finish(record, {
        state: 'failed',
        // An error that stopped the run (recorded before finalizing) is the reason; this one followed it.
        error: record.error ?? { code, message: `finalize failed: ${permanent?.message ?? e.message}` },
      });
    }
    return 'failed';
  }
}
