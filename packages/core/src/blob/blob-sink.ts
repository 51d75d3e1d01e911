/**
 * Writes one job's vectors to Azure Blob storage.
 *
 * Layout. `pathTemplate` names the job's files, so it must contain `{jobId}` and may contain `{date}`
 * (the job's UTC date, from `jobDate`, never "now": a retry after midnight must pick the same names);
 * `{itemId}` and `{index}` are per-item placeholders and are refused here. With
 * `<base> = expandPathTemplate(pathTemplate, { jobId, date: jobDate })`, e.g. `embeddings/2025-01-31/job-42`:
 *
 *   <base>.jsonl          one line per successful item, in input order: {"id":"…","image_features":[…]}
 *   <base>.npy            (formats.npy) float32 matrix of shape (n, dim), rows in the same order
 *   <base>.ids.json       (formats.npy) JSON array of the n ids: row i of the .npy is ids[i]
 *   <base>.manifest.json  written last, the completion marker: job id, model, dim, counts, failed ids,
 *                         and each file's name, size and MD5
 *
 * Failed items (vector `null`) appear in no data file, only in the manifest's `failedIds`.
 *
 * Why no partial file can be seen as complete. Every blob is a block blob created by one Put Blob, or by
 * Put Block + Put Block List for large ones (uploadData); both are atomic: until the commit, readers see no
 * blob at all (staged blocks are invisible), after it they see all of it. Each data blob is created with
 * `If-None-Match: *`, so a complete blob is never overwritten. The manifest is created only after every data
 * blob exists with the expected size and MD5, so a reader that waits for `<base>.manifest.json` always finds
 * a complete and mutually consistent set, and can check each file against the MD5 the manifest lists.
 *
 * Idempotency. Names are deterministic, so a retried job addresses the same blobs. Each write first reads
 * the blob's properties: if it exists with the same size and Content-MD5 it counts as done (outcome
 * `existing`) and nothing is sent. Otherwise it uploads conditionally; a 409 BlobAlreadyExists (another
 * attempt got there first, or our own earlier try succeeded but its answer was lost) is checked the same way.
 * Same bytes -> done; different bytes -> a conflict error and nothing is overwritten. A retry after a crash
 * therefore finishes the set without duplicating or touching any complete blob.
 *
 * Caveat: if inference is not bit-for-bit reproducible (batch composition, threads, hardware), a retry
 * produces different bytes. A complete earlier set (manifest present) can then be accepted as the job's
 * output with `onExisting: 'accept-complete'`; a crash that left data blobs but no manifest, followed by a
 * retry with different bytes, still ends in a conflict error.
 */
import { createHash } from 'node:crypto';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { BlobServiceClient, BlockBlobClient, ContainerClient } from '@azure/storage-blob';
import { EmbedpoolError } from '../errors';
import type { Logger } from '../logger';
import { isValidContainerName, redactUrl } from './blob-client';
import { encodeNpyFloat32 } from './npy';
import {
  expandPathTemplate,
  MAX_BLOB_NAME_LENGTH,
  PathTemplateError,
  parsePathTemplate,
} from './path-template';
import {
  CLIENT_TIMEOUT_CODE,
  isBlobAlreadyExists,
  isTransientStorageError,
  storageStatus,
  toStorageError,
} from './storage-errors';

export interface JobVectorItem {
  id: string;
  /** `null` marks an item that failed: it is left out of every data file. */
  vector: Float32Array | null;
}

export interface JobVectorFormats {
  jsonl: true;
  /** Also write `<base>.npy` and `<base>.ids.json`. */
  npy?: boolean;
}

/** Our retry around each whole blob write, on top of the SDK's per-request retries. */
export interface SinkRetryOptions {
  /** Attempts per blob write, including the first. Default 3. */
  attempts: number;
  /** Delay before the second attempt, doubled after each failure. Default 1000 ms. */
  backoffMs: number;
  maxBackoffMs: number;
  /** Client-side deadline for one attempt (all the SDK's tries included). Default 5 min. */
  operationTimeoutMs: number;
}

export const DEFAULT_SINK_RETRY: SinkRetryOptions = {
  attempts: 3,
  backoffMs: 1_000,
  maxBackoffMs: 8_000,
  operationTimeoutMs: 300_000,
};

export interface UploadTuning {
  /** Bodies up to this size go in one Put Blob; larger ones in blocks then one commit. Default 32 MiB. */
  maxSingleShotBytes?: number;
  /** Default 8 MiB. */
  blockBytes?: number;
  /** Blocks in flight per blob. Default 4. */
  concurrency?: number;
}

export interface WriteJobVectorsOptions {
  client: BlobServiceClient;
  container: string;
  pathTemplate: string;
  jobId: string;
  /** The job's creation time; required when the template uses `{date}`. */
  jobDate?: Date | number | string;
  items: readonly JobVectorItem[];
  model: string;
  dim: number;
  formats: JobVectorFormats;
  /** Create the container if it is missing (needs account-level rights; not with a container SAS). */
  createContainer?: boolean;
  /**
   * When a complete set (manifest) exists with different bytes: `verify` (default) throws a conflict error;
   * `accept-complete` returns the existing set when it is for the same job id, model and dim.
   */
  onExisting?: 'verify' | 'accept-complete';
  retry?: Partial<SinkRetryOptions>;
  upload?: UploadTuning;
  signal?: AbortSignal;
  logger?: Logger;
}

export type JobBlobKind = 'jsonl' | 'npy' | 'ids' | 'manifest';

export interface WrittenBlob {
  kind: JobBlobKind;
  /** Blob name within the container. */
  name: string;
  /** The blob's URL without query string (no SAS token). */
  url: string;
  bytes: number;
  /** Base64 MD5 of the content, as Azure's Content-MD5. */
  md5: string;
  etag: string | undefined;
  /** `written` by this call, or `existing`: already there with the same content. */
  outcome: 'written' | 'existing';
}

export interface WriteJobVectorsResult {
  container: string;
  basePath: string;
  jsonl: WrittenBlob;
  npy: WrittenBlob | undefined;
  ids: WrittenBlob | undefined;
  manifest: WrittenBlob;
  /** Every blob of the set, the manifest last. */
  blobs: WrittenBlob[];
  /** Items written (with a vector). */
  count: number;
  failed: number;
  failedIds: string[];
  /** The manifest already existed: an earlier attempt had completed the job. */
  alreadyComplete: boolean;
}

export interface JobVectorsManifest {
  format: 'embedpool.job-vectors';
  version: 1;
  jobId: string;
  model: string;
  dim: number;
  count: number;
  failed: number;
  failedIds: string[];
  files: Partial<Record<Exclude<JobBlobKind, 'manifest'>, { name: string; bytes: number; md5: string }>>;
}

export interface JobBlobNames {
  basePath: string;
  jsonl: string;
  npy: string;
  ids: string;
  manifest: string;
}

/** The blob names of a job's output set (see the layout at the top of this file). */
export function jobBlobNames(
  pathTemplate: string,
  jobId: string,
  jobDate?: Date | number | string,
): JobBlobNames {
  const parsed = parsePathTemplate(pathTemplate, { allowed: ['jobId', 'date'], required: ['jobId'] });
  if (parsed.placeholders.has('date') && jobDate === undefined) {
    throw new PathTemplateError(
      'missing-value',
      pathTemplate,
      'uses {date}: pass jobDate (the job creation time) so a retried job writes to the same names',
    );
  }
  const basePath = expandPathTemplate(parsed, { jobId, ...(jobDate === undefined ? {} : { date: jobDate }) });
  const names = {
    basePath,
    jsonl: `${basePath}.jsonl`,
    npy: `${basePath}.npy`,
    ids: `${basePath}.ids.json`,
    manifest: `${basePath}.manifest.json`,
  };
  if (names.manifest.length > MAX_BLOB_NAME_LENGTH) {
    throw new PathTemplateError(
      'too-long',
      pathTemplate,
      `blob names are over ${MAX_BLOB_NAME_LENGTH} characters`,
    );
  }
  return names;
}

const md5 = (body: Buffer) => createHash('md5').update(body).digest();

const JSONL_CHUNK_LINES = 256;

/** One JSON line per row; yields to the event loop between chunks so a large job does not stall the process. */
async function encodeJsonl(rows: readonly { id: string; vector: Float32Array }[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (let start = 0; start < rows.length; start += JSONL_CHUNK_LINES) {
    let text = '';
    for (const row of rows.slice(start, start + JSONL_CHUNK_LINES)) {
      // Each float32 is written as the shortest double that equals it: exact, and parses back bit-for-bit
      // (JSON has no -0: a negative zero is written as 0).
      text += `${JSON.stringify({ id: row.id, image_features: Array.from(row.vector) })}\n`;
    }
    chunks.push(Buffer.from(text, 'utf8'));
    if (start + JSONL_CHUNK_LINES < rows.length) await yieldToLoop();
  }
  return Buffer.concat(chunks);
}

function validate(opts: WriteJobVectorsOptions): { id: string; vector: Float32Array }[] {
  const { dim, items } = opts;
  if (!Number.isSafeInteger(dim) || dim <= 0) throw new EmbedpoolError('INTERNAL', `invalid dim ${dim}`);
  if (!opts.model) throw new EmbedpoolError('INTERNAL', 'model name is required');
  if (opts.formats?.jsonl !== true) throw new EmbedpoolError('INTERNAL', 'formats.jsonl must be true');
  if (!isValidContainerName(opts.container)) {
    throw new EmbedpoolError('CONFIG_INVALID', `invalid container name ${JSON.stringify(opts.container)}`);
  }
  const seen = new Set<string>();
  const rows: { id: string; vector: Float32Array }[] = [];
  for (const [i, item] of items.entries()) {
    if (typeof item.id !== 'string' || item.id.length === 0) {
      throw new EmbedpoolError('BAD_REQUEST', `item ${i} has no id`);
    }
    if (seen.has(item.id))
      throw new EmbedpoolError('BAD_REQUEST', `duplicate item id ${JSON.stringify(item.id)}`);
    seen.add(item.id);
    const v = item.vector;
    if (v === null) continue;
    if (!(v instanceof Float32Array) || v.length !== dim) {
      throw new EmbedpoolError(
        'INTERNAL',
        `item ${JSON.stringify(item.id)} has ${v?.length} values, expected ${dim}`,
      );
    }
    for (let j = 0; j < v.length; j++) {
      if (!Number.isFinite(v[j]!)) {
        throw new EmbedpoolError(
          'INFERENCE_FAILED',
          `item ${JSON.stringify(item.id)} has a non-finite value`,
        );
      }
    }
    rows.push({ id: item.id, vector: v });
  }
  return rows;
}

interface Payload {
  kind: JobBlobKind;
  name: string;
  body: Buffer;
  md5: Buffer;
  contentType: string;
}

function payload(kind: JobBlobKind, name: string, body: Buffer, contentType: string): Payload {
  return { kind, name, body, md5: md5(body), contentType };
}

class Writer {
  readonly retry: SinkRetryOptions;
  readonly container: ContainerClient;

  constructor(private readonly opts: WriteJobVectorsOptions) {
    this.retry = { ...DEFAULT_SINK_RETRY, ...opts.retry };
    if (!Number.isSafeInteger(this.retry.attempts) || this.retry.attempts < 1) {
      throw new EmbedpoolError('CONFIG_INVALID', `retry.attempts must be a positive integer`);
    }
    this.container = opts.client.getContainerClient(opts.container);
  }

  /** Runs `fn` with a per-attempt deadline; retries transient storage failures with capped backoff. */
  async withRetry<T>(
    op: string,
    blob: string | undefined,
    fn: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const { signal: outer, logger } = this.opts;
    for (let attempt = 1; ; attempt++) {
      outer?.throwIfAborted();
      const deadline = AbortSignal.timeout(this.retry.operationTimeoutMs);
      const signal = outer ? AbortSignal.any([outer, deadline]) : deadline;
      let failure: unknown;
      try {
        return await fn(signal);
      } catch (err) {
        if (outer?.aborted) throw outer.reason;
        failure = deadline.aborted
          ? Object.assign(new Error(`no answer within ${this.retry.operationTimeoutMs} ms`), {
              code: CLIENT_TIMEOUT_CODE,
              cause: err,
            })
          : err;
      }
      const ctx = { op, container: this.opts.container, blob, attempts: attempt };
      if (!isTransientStorageError(failure) || attempt >= this.retry.attempts)
        throw toStorageError(failure, ctx);
      const wait = Math.min(this.retry.backoffMs * 2 ** (attempt - 1), this.retry.maxBackoffMs);
      logger?.warn({ ...ctx, err: toStorageError(failure, ctx).message, waitMs: wait }, 'blob write retry');
      await sleep(wait, outer);
    }
  }

  async head(
    name: string,
  ): Promise<{ bytes: number; md5: Buffer | undefined; etag: string | undefined } | undefined> {
    return this.withRetry('read properties', name, async (abortSignal) => {
      try {
        const p = await this.container.getBlockBlobClient(name).getProperties({ abortSignal });
        return {
          bytes: p.contentLength ?? -1,
          md5: p.contentMD5 ? Buffer.from(p.contentMD5) : undefined,
          etag: p.etag,
        };
      } catch (err) {
        if (storageStatus(err) === 404) return undefined;
        throw err;
      }
    });
  }

  private conflict(p: Payload, found: { bytes: number; md5: Buffer | undefined }): EmbedpoolError {
    return new EmbedpoolError(
      'INTERNAL',
      `blob ${this.opts.container}/${p.name} already exists with different content ` +
        `(BlobAlreadyExists: ${found.bytes} bytes, md5 ${found.md5?.toString('base64') ?? 'none'}; ` +
        `this write: ${p.body.length} bytes, md5 ${p.md5.toString('base64')}); not overwritten`,
      {
        details: {
          storageCode: 'BlobAlreadyExists',
          reason: 'conflict',
          transient: false,
          container: this.opts.container,
          blob: p.name,
          expected: { bytes: p.body.length, md5: p.md5.toString('base64') },
          found: { bytes: found.bytes, md5: found.md5?.toString('base64') },
        },
      },
    );
  }

  private result(
    p: Payload,
    blob: BlockBlobClient,
    etag: string | undefined,
    outcome: WrittenBlob['outcome'],
  ) {
    return {
      kind: p.kind,
      name: p.name,
      url: redactUrl(blob.url),
      bytes: p.body.length,
      md5: p.md5.toString('base64'),
      etag,
      outcome,
    } satisfies WrittenBlob;
  }

  /** Creates the blob unless it exists; an existing blob must hold the same bytes (size and MD5). */
  async putIfAbsent(p: Payload): Promise<WrittenBlob> {
    const blob = this.container.getBlockBlobClient(p.name);
    const same = (found: { bytes: number; md5: Buffer | undefined }) =>
      found.bytes === p.body.length && found.md5 !== undefined && found.md5.equals(p.md5);
    // Look first: a retried job then sends no bytes for blobs an earlier attempt completed.
    const before = await this.head(p.name);
    if (before) {
      if (!same(before)) throw this.conflict(p, before);
      return this.result(p, blob, before.etag, 'existing');
    }
    const tuning = this.opts.upload ?? {};
    return this.withRetry('upload', p.name, async (abortSignal) => {
      try {
        const res = await blob.uploadData(p.body, {
          abortSignal,
          conditions: { ifNoneMatch: '*' },
          blobHTTPHeaders: { blobContentType: p.contentType, blobContentMD5: p.md5 },
          maxSingleShotSize: tuning.maxSingleShotBytes ?? 32 * 1024 * 1024,
          blockSize: tuning.blockBytes ?? 8 * 1024 * 1024,
          concurrency: tuning.concurrency ?? 4,
        });
        this.opts.logger?.debug({ blob: p.name, bytes: p.body.length }, 'blob written');
        return this.result(p, blob, res.etag, 'written');
      } catch (err) {
        if (!isBlobAlreadyExists(err)) throw err;
        // Someone (maybe our own earlier try whose answer was lost) created it meanwhile.
        const props = await blob.getProperties({ abortSignal });
        const found = {
          bytes: props.contentLength ?? -1,
          md5: props.contentMD5 ? Buffer.from(props.contentMD5) : undefined,
        };
        if (!same(found)) throw this.conflict(p, found);
        return this.result(p, blob, props.etag, 'existing');
      }
    });
  }

  async readManifest(name: string): Promise<JobVectorsManifest> {
    const body = await this.withRetry('download', name, (abortSignal) =>
      this.container.getBlockBlobClient(name).downloadToBuffer(0, undefined, { abortSignal }),
    );
    return JSON.parse(body.toString('utf8')) as JobVectorsManifest;
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * An earlier attempt's complete output, kept when its manifest says the same job, model and dim and all its
 * blobs exist (onExisting: 'accept-complete'); undefined otherwise.
 */
async function adoptExisting(
  opts: WriteJobVectorsOptions,
  writer: Writer,
  names: ReturnType<typeof jobBlobNames>,
): Promise<WriteJobVectorsResult | undefined> {
  if (opts.onExisting !== 'accept-complete') return undefined;
  const existing = await writer.readManifest(names.manifest);
  if (existing.jobId !== opts.jobId || existing.model !== opts.model || existing.dim !== opts.dim) {
    return undefined;
  }
  const blobs: WrittenBlob[] = [];
  for (const [kind, file] of Object.entries(existing.files)) {
    const props = await writer.head(file.name);
    if (!props) return undefined;
    blobs.push({
      kind: kind as JobBlobKind,
      name: file.name,
      url: redactUrl(writer.container.getBlockBlobClient(file.name).url),
      bytes: file.bytes,
      md5: file.md5,
      etag: props.etag,
      outcome: 'existing',
    });
  }
  const mprops = await writer.head(names.manifest);
  blobs.push({
    kind: 'manifest',
    name: names.manifest,
    url: redactUrl(writer.container.getBlockBlobClient(names.manifest).url),
    bytes: mprops?.bytes ?? 0,
    md5: mprops?.md5?.toString('base64') ?? '',
    etag: mprops?.etag,
    outcome: 'existing',
  });
  opts.logger?.warn({ jobId: opts.jobId, manifest: names.manifest }, 'kept an earlier complete job output');
  return assemble(opts.container, names.basePath, blobs, existing.count, existing.failedIds ?? [], true);
}

/** The data blobs' bytes (JSON lines, and .npy + ids when asked) and the manifest naming them. */
async function encodePayloads(
  opts: WriteJobVectorsOptions,
  rows: { id: string; vector: Float32Array }[],
  names: ReturnType<typeof jobBlobNames>,
  failedIds: string[],
): Promise<{ data: Payload[]; manifestPayload: Payload }> {
  const data: Payload[] = [];
  if (opts.formats.npy) {
    data.push(
      payload(
        'npy',
        names.npy,
        encodeNpyFloat32(
          rows.map((r) => r.vector),
          opts.dim,
        ),
        'application/octet-stream',
      ),
      payload('ids', names.ids, Buffer.from(JSON.stringify(rows.map((r) => r.id))), 'application/json'),
    );
  }
  data.unshift(payload('jsonl', names.jsonl, await encodeJsonl(rows), 'application/x-ndjson'));

  const manifest: JobVectorsManifest = {
    format: 'embedpool.job-vectors',
    version: 1,
    jobId: opts.jobId,
    model: opts.model,
    dim: opts.dim,
    count: rows.length,
    failed: failedIds.length,
    failedIds,
    files: Object.fromEntries(
      data.map((p) => [p.kind, { name: p.name, bytes: p.body.length, md5: p.md5.toString('base64') }]),
    ),
  };
  // Deterministic bytes (no timestamps), so a retry produces the same manifest.
  const manifestPayload = payload(
    'manifest',
    names.manifest,
    Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`),
    'application/json',
  );
  return { data, manifestPayload };
}

/**
 * Writes a job's vectors (JSONL, optionally NPY + ids) and then its manifest; safe to call again for the
 * same job. Throws an EmbedpoolError whose `details.storageCode` is the storage service's (or network's)
 * error code when storage fails after the retries.
 */
export async function writeJobVectors(opts: WriteJobVectorsOptions): Promise<WriteJobVectorsResult> {
  const rows = validate(opts);
  const names = jobBlobNames(opts.pathTemplate, opts.jobId, opts.jobDate);
  const writer = new Writer(opts);
  const failedIds = opts.items.filter((i) => i.vector === null).map((i) => i.id);

  const { data, manifestPayload } = await encodePayloads(opts, rows, names, failedIds);

  if (opts.createContainer) {
    await writer.withRetry('create container', undefined, (abortSignal) =>
      writer.container.createIfNotExists({ abortSignal }),
    );
  }

  const adopt = () => adoptExisting(opts, writer, names);

  // The manifest is the commit point: present means an earlier attempt completed the set.
  const before = await writer.head(names.manifest);
  const alreadyComplete = before !== undefined;
  if (before && !(before.bytes === manifestPayload.body.length && before.md5?.equals(manifestPayload.md5))) {
    const adopted = await adopt();
    if (adopted) return adopted;
    throw new EmbedpoolError(
      'INTERNAL',
      `job ${opts.jobId}: ${opts.container}/${names.manifest} already exists with a different manifest ` +
        '(BlobAlreadyExists; another attempt wrote different vectors, or another job uses the same path); ' +
        'nothing overwritten',
      {
        details: {
          storageCode: 'BlobAlreadyExists',
          reason: 'conflict',
          transient: false,
          container: opts.container,
          blob: names.manifest,
        },
      },
    );
  }

  // Data first (in parallel), the manifest only once all of it is in place.
  const settled = await Promise.allSettled(data.map((p) => writer.putIfAbsent(p)));
  const firstFailure = settled.find((s) => s.status === 'rejected');
  if (firstFailure) throw firstFailure.reason;
  const written = settled.map((s) => (s as PromiseFulfilledResult<WrittenBlob>).value);
  let manifestBlob: WrittenBlob;
  try {
    manifestBlob = await writer.putIfAbsent(manifestPayload);
  } catch (err) {
    // A concurrent attempt committed a different set between our check and our write.
    const adopted =
      err instanceof EmbedpoolError && err.details?.reason === 'conflict' ? await adopt() : undefined;
    if (adopted) return adopted;
    throw err;
  }
  return assemble(
    opts.container,
    names.basePath,
    [...written, manifestBlob],
    rows.length,
    failedIds,
    alreadyComplete,
  );
}

function assemble(
  container: string,
  basePath: string,
  blobs: WrittenBlob[],
  count: number,
  failedIds: string[],
  alreadyComplete: boolean,
): WriteJobVectorsResult {
  const find = (kind: JobBlobKind) => blobs.find((b) => b.kind === kind);
  return {
    container,
    basePath,
    jsonl: find('jsonl')!,
    npy: find('npy'),
    ids: find('ids'),
    manifest: find('manifest')!,
    blobs,
    count,
    failed: failedIds.length,
    failedIds,
    alreadyComplete,
  };
}
