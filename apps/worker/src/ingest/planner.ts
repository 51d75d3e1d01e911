import type {
  BlobClient,
  BlobItem,
  ContainerClient,
  ContainerListBlobFlatSegmentResponse,
} from '@azure/storage-blob';
import { storageErrorCode, storageStatus, toStorageError } from '@embedpool/core/blob';
import { EmbedpoolError, toEmbedpoolError } from '@embedpool/core/errors';
import {
  type BlobFailure,
  blobFilter,
  type ChunkBlob,
  type ChunkJobData,
  compareNames,
  csvColumn,
  IndexCursor,
  type IngestionError,
  type IngestionManifest,
  type IngestionRecord,
  ingestKeys,
  isFinalIngestionState,
  manifestFormat,
  OutputLayout,
  type PageCheckpoint,
  type PlanCheckpoint,
  parseManifestLines,
  wholeLines,
} from '@embedpool/core/ingest';
import { DelayedError, type Job } from 'bullmq';
import { normalizeEtag } from './blob-download';
import type { IngestDeps } from './deps';
import { ingestionErrorCode, noteRetry } from './retry-note';

/** Thrown inside planning for a problem that retrying cannot fix: the ingestion fails with it. */
export class PlanningError extends Error {
  constructor(readonly error: IngestionError) {
    super(`${error.code}: ${error.message}`);
    this.name = 'PlanningError';
  }
}

const PERMANENT_STORAGE = new Set([
  'ContainerNotFound',
  'AuthorizationFailure',
  'AuthorizationPermissionMismatch',
  'AuthenticationFailed',
  'InvalidResourceName',
  'InvalidQueryParameterValue',
]);

/**
 * A storage failure worth no retry (a missing container, refused credentials), from the SDK's error or
 * from one already wrapped by toStorageError (which keeps the service's code in `details`).
 */
export function permanentStorageFailure(err: unknown, op = 'list'): IngestionError | undefined {
  const wrapped = err instanceof EmbedpoolError;
  const code = wrapped
    ? typeof err.details?.storageCode === 'string'
      ? err.details.storageCode
      : undefined
    : storageErrorCode(err);
  const status = wrapped
    ? typeof err.details?.status === 'number'
      ? err.details.status
      : undefined
    : storageStatus(err);
  if ((code && PERMANENT_STORAGE.has(code)) || status === 401 || status === 403) {
    return {
      code: `STORAGE_${code ?? `HTTP_${status}`}`,
      message: toStorageError(err, { op }).message,
    };
  }
  return undefined;
}

export async function readManifest(
  container: ContainerClient,
  layout: OutputLayout,
): Promise<{ manifest: IngestionManifest; etag: string } | undefined> {
  try {
    const blob = container.getBlobClient(layout.manifest);
    const res = await blob.download(0, undefined, { maxRetryRequests: 3 });
    const chunks: Buffer[] = [];
    for await (const c of res.readableStreamBody as AsyncIterable<Buffer>) chunks.push(c);
    return {
      manifest: JSON.parse(Buffer.concat(chunks).toString('utf8')) as IngestionManifest,
      etag: normalizeEtag(res.etag),
    };
  } catch (err) {
    if (storageStatus(err) === 404) return undefined;
    throw err;
  }
}

/**
 * A round-0 ingestion's first steps (safe to repeat): the output container, the output's manifest (which
 * run this is, which index to compare against, and that it holds vectors of this worker's model and
 * format). Sets them on the record once and moves it to running.
 */
async function prepare(deps: IngestDeps, record: IngestionRecord): Promise<IngestionRecord> {
  if (record.run !== undefined) return record;
  const req = record.request;
  const layout = new OutputLayout(req.output.prefix);
  const out = deps.blob.getContainerClient(req.output.container);
  try {
    await out.createIfNotExists();
  } catch (err) {
    const permanent = permanentStorageFailure(err);
    if (permanent) throw new PlanningError(permanent);
    throw err;
  }
  const found = await readManifest(out, layout);
  const m = found?.manifest;
  if (m && m.model !== deps.modelId) {
    throw new PlanningError({
      code: 'OUTPUT_MODEL_MISMATCH',
      message: `output ${req.output.container}/${req.output.prefix} holds vectors of model ${m.model}; this worker runs ${deps.modelId}. Use another output prefix.`,
    });
  }
  if (m && m.shardFormat !== req.output.format) {
    throw new PlanningError({
      code: 'OUTPUT_FORMAT_MISMATCH',
      message: `output ${req.output.container}/${req.output.prefix} holds ${m.shardFormat} shards; this ingestion asks for ${req.output.format}`,
    });
  }
  let baseIndex: { name: string; etag?: string } | undefined;
  if (m?.index?.name) {
    const props = await out
      .getBlobClient(layout.path(m.index.name))
      .getProperties()
      .catch((err: unknown) => {
        if (storageStatus(err) === 404) return undefined;
        throw err;
      });
    if (props) baseIndex = { name: m.index.name, etag: normalizeEtag(props.etag) };
    else
      deps.logger.warn(
        { index: m.index.name },
        'the output index named by the manifest is missing: embedding everything',
      );
  }
  const previous = m?.runs.find((r) => r.ingestionId === record.id);
  const run = previous?.run ?? (m?.runs.length ?? 0) + 1;
  await deps.store.start(record.id, {
    run,
    model: deps.modelId,
    dim: deps.dim(),
    ...(baseIndex ? { baseIndex } : {}),
  });
  return (await deps.store.get(record.id))!;
}

type PlanOutcome = 'done' | 'stopped' | 'conflict';

/** A storage SDK failure keeps the service's code (`STORAGE_ECONNREFUSED`); anything else its own. */
function asError(err: unknown): EmbedpoolError {
  if (!(err instanceof EmbedpoolError) && storageErrorCode(err) !== undefined) {
    return toStorageError(err, { op: 'planning' });
  }
  return toEmbedpoolError(err);
}

/**
 * The planner job: lists the source page by page (or, in a retry round, the failures being retried), cuts
 * chunks with deterministic ids, and commits each page's checkpoint (continuation token, next chunk seq,
 * leftover blobs, position in the previous index) with its counters in one script. A planner that dies
 * resumes from the last committed page; a page listed twice re-creates the same chunk ids. While more than
 * INGEST_MAX_QUEUED_CHUNKS chunks wait it parks (a delayed job), and the chunk that brings the backlog down
 * to half wakes it.
 */
export async function runPlanner(
  deps: IngestDeps,
  job: Job,
  token: string | undefined,
  ingestionId: string,
  round: number,
): Promise<string> {
  let record = await deps.store.get(ingestionId);
  if (!record) return 'missing';
  if (record.round !== round) return 'stale';
  if (isFinalIngestionState(record.state)) return record.state;
  const log = deps.logger.child({ ingestionId, round });
  if (record.listingDone) {
    if (record.state === 'finalizing') await deps.queues.addFinalize({ ingestionId, round });
    return 'listed';
  }
  try {
    if (
      round === 0 &&
      record.run === undefined &&
      (record.cancelRequested || record.state === 'cancelling')
    ) {
      // Cancelled (or stopped) before planning started: end without touching storage.
      await endPlanning(deps, record);
      return 'stopped';
    }
    if (round === 0) record = await prepare(deps, record);
    const outcome =
      round > 0
        ? await planRetry(deps, job, token, record)
        : record.request.source.manifest
          ? await planManifest(deps, job, token, record)
          : await planListing(deps, job, token, record);
    log.info({ outcome }, 'planner finished');
    return outcome;
  } catch (err) {
    if (err instanceof DelayedError) throw err;
    const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    const permanent = err instanceof PlanningError ? err.error : permanentStorageFailure(err);
    if (!permanent && !last) {
      log.warn({ err: (err as Error).message, attempt: job.attemptsMade + 1 }, 'planner attempt failed');
      const e = asError(err);
      await noteRetry(deps.store, ingestionId, 'planning', ingestionErrorCode(e), e.message, job);
      throw err;
    }
    const e = asError(err);
    const error = permanent ?? {
      code: ingestionErrorCode(e),
      message: e.message,
    };
    log.error({ error }, 'planning failed');
    // Chunks already queued still run; the run is recorded (as failed) once they are done.
    const fresh = (await deps.store.get(ingestionId)) ?? record;
    await endPlanning(deps, fresh, { error });
    return 'failed';
  }
}

/** Ends a round's planning early (cancel, error): listing done, nothing more queued. */
async function endPlanning(
  deps: IngestDeps,
  record: IngestionRecord,
  extra: { error?: IngestionError; restoreFrom?: { name?: string; inclusive?: boolean } } = {},
): Promise<void> {
  const ckpt: PlanCheckpoint = record.checkpoint ?? { page: 0, seq: 0, buffer: [], indexOffset: 0 };
  const page = ckpt.page + 1;
  const res = await deps.store.checkpoint(record, {
    round: record.round,
    page,
    checkpoint: { ...ckpt, page, buffer: [] },
    planned: ckpt.seq,
    // Blobs listed but never queued (the leftover of a cancelled listing) leave the counts.
    discovered: record.round === 0 ? -ckpt.buffer.length : 0,
    listingDone: true,
    ...(extra.error ? { error: extra.error } : {}),
    ...(extra.restoreFrom ? { restoreFrom: extra.restoreFrom } : {}),
  });
  if (res.complete || res.status === 'done') {
    const now = await deps.store.get(record.id);
    if (now?.state === 'finalizing')
      await deps.queues.addFinalize({ ingestionId: record.id, round: record.round });
  }
}

/** Between pages: stop for a cancel, hand the job back on shutdown, park on back-pressure. */
async function gate(
  deps: IngestDeps,
  job: Job,
  token: string | undefined,
  record: IngestionRecord,
): Promise<'go' | 'cancel'> {
  const [state, cancel] = await deps.store.redis.hmget(
    ingestKeys.record(deps.store.prefix, record.id),
    'state',
    'cancelRequested',
  );
  if (cancel === '1' || state === 'cancelling') return 'cancel';
  if (deps.closing()) {
    await job.moveToDelayed(Date.now() + 100, token);
    throw new DelayedError();
  }
  if (await deps.store.park(record.id, deps.settings.INGEST_MAX_QUEUED_CHUNKS)) {
    await job.moveToDelayed(Date.now() + deps.settings.INGEST_PLAN_PARK_MS, token);
    throw new DelayedError();
  }
  return 'go';
}

function cut(
  record: IngestionRecord,
  buffer: ChunkBlob[],
  seq: number,
  size: number,
  flush: boolean,
): { chunks: ChunkJobData[]; seq: number } {
  const chunks: ChunkJobData[] = [];
  while (buffer.length >= size || (flush && buffer.length > 0)) {
    chunks.push({ ingestionId: record.id, round: record.round, seq, blobs: buffer.splice(0, size) });
    seq++;
  }
  return { chunks, seq };
}

async function commitPage(
  deps: IngestDeps,
  record: IngestionRecord,
  chunks: ChunkJobData[],
  c: PageCheckpoint,
): Promise<'ok' | 'conflict' | 'gone'> {
  // Chunks first: a crash before the checkpoint replays this page, which re-creates the same chunk ids.
  await deps.queues.addChunks(chunks);
  const res = await deps.store.checkpoint(record, c);
  deps.metrics?.listPages.inc();
  if (res.status === 'conflict') return 'conflict';
  if (res.status === 'stale' || res.status === 'missing') return 'gone';
  if (res.complete) await deps.queues.addFinalize({ ingestionId: record.id, round: record.round });
  return 'ok';
}

/**
 * One listing page, as compact tuples. A fresh iterator per page: the SDK's page objects (tens of
 * properties per blob, the XML text) become garbage before the page's chunks are written, instead of living
 * on in the iterator across those round trips (which promotes them to the old generation and grows the heap).
 */
async function listPage(
  source: ContainerClient,
  listOptions: { prefix?: string },
  maxPageSize: number,
  token: string | undefined,
): Promise<{ blobs: ChunkBlob[]; next?: string }> {
  const it = source.listBlobsFlat(listOptions).byPage({
    ...(token ? { continuationToken: token } : {}),
    maxPageSize,
  });
  const r = await it.next();
  if (r.done) return { blobs: [] };
  const seg: ContainerListBlobFlatSegmentResponse = r.value;
  const blobs = seg.segment.blobItems.map(
    (b: BlobItem): ChunkBlob => [b.name, normalizeEtag(b.properties.etag), b.properties.contentLength ?? 0],
  );
  return seg.continuationToken ? { blobs, next: seg.continuationToken } : { blobs };
}

/**
 * Compares a listing page with the previous run's index (both in name order, walked in step): a blob with
 * an unchanged row is skipped, an unchanged failure carried (unless retryUnchangedFailures), the rest go to
 * `buffer` to be cut into chunks. Rows of the index the listing passed by are missing from the source; on
 * the `last` page, every row left is.
 */
async function comparePage(
  blobs: readonly ChunkBlob[],
  base: IndexCursor,
  buffer: ChunkBlob[],
  opts: { filter: (name: string) => boolean; retryUnchangedFailures: boolean; last: boolean },
): Promise<{ discovered: number; skipped: number; missing: number; carried: BlobFailure[] }> {
  const { filter } = opts;
  let discovered = 0;
  let skipped = 0;
  let missing = 0;
  const carried: BlobFailure[] = [];
  for (const item of blobs) {
    const [name, etag, size] = item;
    if (!filter(name)) continue;
    discovered++;
    // The listing and the previous index are both in name order: walk them in step.
    let e = await base.peek();
    while (e && compareNames(e.name, name) < 0) {
      if (e.shard !== undefined && filter(e.name)) missing++;
      await base.advance();
      e = await base.peek();
    }
    if (e && e.name === name) {
      await base.advance();
      if (e.etag === etag) {
        if (e.shard !== undefined) {
          skipped++;
          continue;
        }
        if (!opts.retryUnchangedFailures) {
          carried.push({
            name,
            etag,
            size,
            code: e.failure ?? 'FAILED',
            message: `failed in an earlier run (${e.failure}) and has not changed since; not tried again`,
            permanent: true,
            carried: true,
            at: Date.now(),
          });
          continue;
        }
      }
    }
    buffer.push([name, etag, size]);
  }
  if (opts.last) {
    for (let e = await base.peek(); e; e = await base.peek()) {
      if (e.shard !== undefined && filter(e.name)) missing++;
      await base.advance();
    }
  }
  return { discovered, skipped, missing, carried };
}

async function planListing(
  deps: IngestDeps,
  job: Job,
  token: string | undefined,
  record: IngestionRecord,
): Promise<PlanOutcome> {
  const req = record.request;
  const size = deps.settings.INGEST_CHUNK_SIZE;
  const filter = blobFilter(req.source, req.output);
  const layout = new OutputLayout(req.output.prefix);
  const out = deps.blob.getContainerClient(req.output.container);
  const ckpt: PlanCheckpoint = record.checkpoint ?? { page: 0, seq: 0, buffer: [], indexOffset: 0 };
  const base = new IndexCursor(
    record.baseIndex ? out.getBlobClient(layout.path(record.baseIndex.name)) : undefined,
    ckpt.indexOffset,
    record.baseIndex?.etag ? { etag: record.baseIndex.etag } : {},
  );
  const source = deps.blob.getContainerClient(req.source.container);
  const listOptions = req.source.prefix ? { prefix: req.source.prefix } : {};
  const fetchPage = (token: string | undefined) =>
    listPage(source, listOptions, deps.settings.INGEST_LIST_PAGE_SIZE, token);
  let page = ckpt.page;
  let seq = ckpt.seq;
  let listToken = ckpt.token;
  const buffer: ChunkBlob[] = [...ckpt.buffer];
  try {
    for (;;) {
      if ((await gate(deps, job, token, record)) === 'cancel') {
        const now = (await deps.store.get(record.id)) ?? record;
        await endPlanning(deps, now);
        return 'stopped';
      }
      await deps.store.countListCall(record.id);
      const fetched = await fetchPage(listToken);
      const continuation = fetched.next;
      const last = !continuation;

      const { discovered, skipped, missing, carried } = await comparePage(fetched.blobs, base, buffer, {
        filter,
        retryUnchangedFailures: req.retryUnchangedFailures === true,
        last,
      });
      const cutRes = cut(record, buffer, seq, size, last);
      seq = cutRes.seq;
      page++;
      const queued = cutRes.chunks.reduce((n, c) => n + c.blobs.length, 0);
      const committed = await commitPage(deps, record, cutRes.chunks, {
        round: 0,
        page,
        checkpoint: {
          page,
          ...(continuation ? { token: continuation } : {}),
          seq,
          buffer,
          indexOffset: base.offset,
        },
        planned: seq,
        discovered,
        skipped,
        queued,
        missing,
        listingDone: last,
        carried,
      });
      if (committed !== 'ok') return committed === 'conflict' ? 'conflict' : 'stopped';
      if (last) return 'done';
      listToken = continuation;
    }
  } finally {
    await base.close();
  }
}

/** Bytes of a manifest input read per planner page (a line must fit in one). */
const MANIFEST_PAGE_BYTES = 256 * 1024;

/** A manifest's size; MANIFEST_NOT_FOUND when it does not exist. */
async function manifestSize(blob: BlobClient, where: string): Promise<number> {
  const props = await blob.getProperties().catch(async (err: unknown) => {
    if (storageStatus(err) === 404) {
      throw new PlanningError({ code: 'MANIFEST_NOT_FOUND', message: `manifest ${where} does not exist` });
    }
    throw err;
  });
  return props.contentLength ?? 0;
}

/**
 * One page of manifest lines: each blob name (that passes the filter) or URL goes to `buffer`; an invalid
 * line is a permanent failure named after its place in the manifest (`<manifest>@<byte offset>:<line>`).
 */
function manifestPage(
  text: string,
  p: {
    format: NonNullable<ReturnType<typeof manifestFormat>>;
    csv: { column: number };
    where: string;
    offset: number;
    filter: (name: string) => boolean;
  },
  buffer: ChunkBlob[],
): { discovered: number; failures: BlobFailure[] } {
  let discovered = 0;
  const failures: BlobFailure[] = [];
  for (const item of parseManifestLines(text, p.format, p.csv)) {
    if (item.kind === 'invalid') {
      discovered++;
      failures.push({
        name: `${p.where}@${p.offset}:${item.line.slice(0, 200)}`,
        etag: '',
        size: -1,
        code: 'MANIFEST_LINE_INVALID',
        message: `manifest line ${JSON.stringify(item.line.slice(0, 200))}: ${item.reason}`,
        permanent: true,
        at: Date.now(),
      });
      continue;
    }
    if (item.kind === 'blob' && !p.filter(item.name)) continue;
    discovered++;
    buffer.push([item.kind === 'blob' ? item.name : item.url, '', -1]);
  }
  return { discovered, failures };
}

/**
 * A round-0 listing from a manifest input (`source.manifest`) instead of the container: the blob is read
 * in byte pages cut at line ends, and the checkpoint's token is the byte offset of the next line, so a
 * planner that dies resumes there. Items are not compared with the output's index (a manifest is in no
 * name order, and its URLs have no ETag): every item is embedded. Lines that name nothing usable are
 * failures of the run (`MANIFEST_LINE_INVALID`).
 */
async function planManifest(
  deps: IngestDeps,
  job: Job,
  token: string | undefined,
  record: IngestionRecord,
): Promise<PlanOutcome> {
  const req = record.request;
  const m = req.source.manifest!;
  const where = `${m.container ?? req.source.container}/${m.name}`;
  const format = manifestFormat(m.name);
  if (!format) {
    throw new PlanningError({ code: 'MANIFEST_INVALID', message: `${where}: not a .jsonl or .csv blob` });
  }
  const size = deps.settings.INGEST_CHUNK_SIZE;
  const filter = blobFilter(req.source, req.output);
  const blob = deps.blob.getContainerClient(m.container ?? req.source.container).getBlobClient(m.name);
  const read = async (from: number, count: number): Promise<Buffer> => {
    try {
      return await blob.downloadToBuffer(from, count, { maxRetryRequestsPerBlock: 3 });
    } catch (err) {
      if (storageStatus(err) === 404) {
        throw new PlanningError({ code: 'MANIFEST_NOT_FOUND', message: `manifest ${where} does not exist` });
      }
      throw err;
    }
  };
  const total = await manifestSize(blob, where);
  const ckpt: PlanCheckpoint = record.checkpoint ?? { page: 0, seq: 0, buffer: [], indexOffset: 0 };
  let page = ckpt.page;
  let seq = ckpt.seq;
  let offset = ckpt.token !== undefined ? Number(ckpt.token) : 0;
  const buffer: ChunkBlob[] = [...ckpt.buffer];
  let csv = { column: 0 };
  if (format === 'csv' && total > 0) {
    const head = await read(0, Math.min(total, MANIFEST_PAGE_BYTES));
    const nl = head.indexOf(0x0a);
    const first = head.subarray(0, nl < 0 ? head.length : nl).toString('utf8');
    const col = csvColumn(first);
    csv = { column: col.column };
    if (col.header && offset === 0) offset = nl < 0 ? head.length : nl + 1;
  }
  for (;;) {
    if ((await gate(deps, job, token, record)) === 'cancel') {
      const now = (await deps.store.get(record.id)) ?? record;
      await endPlanning(deps, now);
      return 'stopped';
    }
    await deps.store.countListCall(record.id);
    const count = Math.max(0, Math.min(MANIFEST_PAGE_BYTES, total - offset));
    const bytes = count > 0 ? await read(offset, count) : Buffer.alloc(0);
    const eof = offset + count >= total;
    const lines = wholeLines(bytes, offset, eof);
    if (!lines) {
      throw new PlanningError({
        code: 'MANIFEST_INVALID',
        message: `${where}: the line at byte ${offset} is longer than ${MANIFEST_PAGE_BYTES} bytes`,
      });
    }
    const { discovered, failures } = manifestPage(lines.text, { format, csv, where, offset, filter }, buffer);
    const cutRes = cut(record, buffer, seq, size, eof);
    seq = cutRes.seq;
    page++;
    const queued = cutRes.chunks.reduce((n, c) => n + c.blobs.length, 0);
    const committed = await commitPage(deps, record, cutRes.chunks, {
      round: 0,
      page,
      checkpoint: { page, token: String(lines.next), seq, buffer, indexOffset: 0 },
      planned: seq,
      discovered,
      queued,
      listingDone: eof,
      failures,
    });
    if (committed !== 'ok') return committed === 'conflict' ? 'conflict' : 'stopped';
    if (eof) return 'done';
    offset = lines.next;
  }
}

/** A retry round: the failures moved aside by retry-failed, in name order, cut into chunks. */
async function planRetry(
  deps: IngestDeps,
  job: Job,
  token: string | undefined,
  record: IngestionRecord,
): Promise<PlanOutcome> {
  const size = deps.settings.INGEST_CHUNK_SIZE;
  const ckpt: PlanCheckpoint = record.checkpoint ?? { page: 0, seq: 0, buffer: [], indexOffset: 0 };
  let page = ckpt.page;
  let seq = ckpt.seq;
  let after = ckpt.token;
  const buffer: ChunkBlob[] = [...ckpt.buffer];
  for (;;) {
    if ((await gate(deps, job, token, record)) === 'cancel') {
      const now = (await deps.store.get(record.id)) ?? record;
      // Failures not queued yet stay failures: the committed leftover and everything after the cursor.
      const first = now.checkpoint?.buffer[0]?.[0];
      const cursor = now.checkpoint?.token;
      await endPlanning(deps, now, {
        restoreFrom: first ? { name: first, inclusive: true } : cursor ? { name: cursor } : {},
      });
      return 'stopped';
    }
    const failures = await deps.store.retryPage(
      record.id,
      record.round,
      after,
      deps.settings.INGEST_LIST_PAGE_SIZE,
    );
    const last = failures.length < deps.settings.INGEST_LIST_PAGE_SIZE;
    for (const f of failures) buffer.push([f.name, f.etag, f.size]);
    if (failures.length) after = failures[failures.length - 1]!.name;
    const cutRes = cut(record, buffer, seq, size, last);
    seq = cutRes.seq;
    page++;
    const committed = await commitPage(deps, record, cutRes.chunks, {
      round: record.round,
      page,
      checkpoint: { page, ...(after !== undefined ? { token: after } : {}), seq, buffer, indexOffset: 0 },
      planned: seq,
      listingDone: last,
    });
    if (committed !== 'ok') return committed === 'conflict' ? 'conflict' : 'stopped';
    if (last) return 'done';
  }
}
