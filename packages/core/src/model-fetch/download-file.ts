import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Dispatcher } from 'undici';
import { EmbedpoolError } from '../errors';
import { createLogger, type Logger } from '../logger';
import { partialPath } from './cache-paths';
import { normalizeSha256, sha256File } from './hash';
import { createDispatcher, redactUrl, type Timeouts } from './http';
import {
  createProgressReporter,
  type ProgressCallback,
  type ProgressMode,
  type ProgressReporter,
} from './progress';
import { fetchRemoteMeta, type RemoteMeta } from './remote-meta';
import { DEFAULT_RETRY_DELAY_MS, errorMessage, isRetryable, retryBudget, retryDelay, sleep } from './retry';
import { transferOnce } from './transfer';

export interface DownloadFileOptions {
  url: string;
  /** Final path; bytes in flight go to `<dest>.partial`. */
  dest: string;
  /** Expected sha256 (hex). When set it wins over the server's `X-Linked-Etag` and the HEAD request is skipped. */
  sha256?: string;
  /** Extra request headers (e.g. `Authorization`); credentials are dropped on redirects to another origin. */
  headers?: Record<string, string>;
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
  progress?: ProgressMode;
  /** Failed attempts in a row, without a byte of progress, before giving up. Default 5. */
  retries?: number;
  /** First backoff delay; doubles per failure, capped at 8 s. Default 500 ms. */
  retryDelayMs?: number;
  timeouts?: Timeouts;
  logger?: Logger;
  /** Name used in progress, logs and errors. Default: the destination's base name. */
  label?: string;
}

export interface DownloadResult {
  path: string;
  /** sha256 of the file on disk. */
  sha256: string;
  bytes: number;
  /** Bytes that were already in a partial from an earlier run (0 for a fresh download or a cache hit). */
  resumedFrom: number;
  /** False when the final file was already in place with the right content. */
  downloaded: boolean;
  /** True when the hash was checked against a pinned or advertised value, not merely computed. */
  verified: boolean;
}

export const DEFAULT_RETRIES = 5;
/** A server that dribbles a few bytes per connection still has to finish eventually. */
const MAX_ATTEMPTS = 100;

let defaultLogger: Logger | undefined;

interface Context {
  url: string;
  dest: string;
  partial: string;
  file: string;
  headers: Record<string, string>;
  signal: AbortSignal | undefined;
  dispatcher: Dispatcher;
  logger: Logger;
  progress: ProgressReporter;
  retries: number;
  retryDelayMs: number;
}

/**
 * Downloads one file so that the final name only ever holds verified bytes: resumable through a
 * `.partial`, retried on transient failures, sha256-checked, then renamed into place.
 */
export async function downloadFile(options: DownloadFileOptions): Promise<DownloadResult> {
  const pinned = options.sha256 === undefined ? undefined : normalizeSha256(options.sha256);
  if (options.sha256 !== undefined && pinned === undefined) {
    throw new EmbedpoolError('CONFIG_INVALID', `not a sha256 hex digest: "${options.sha256}"`);
  }
  defaultLogger ??= createLogger({ name: 'model-fetch' });
  const logger = options.logger ?? defaultLogger;
  const file = options.label ?? basename(options.dest);
  const dispatcher = createDispatcher(options.timeouts);
  const ctx: Context = {
    url: options.url,
    dest: options.dest,
    partial: partialPath(options.dest),
    file,
    headers: { 'user-agent': 'embedpool-model-fetch', 'accept-encoding': 'identity', ...options.headers },
    signal: options.signal,
    dispatcher,
    logger,
    progress: createProgressReporter({ mode: options.progress, onProgress: options.onProgress, logger }),
    retries: options.retries ?? DEFAULT_RETRIES,
    retryDelayMs: options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS,
  };
  try {
    options.signal?.throwIfAborted();
    await mkdir(dirname(options.dest), { recursive: true });
    let meta: RemoteMeta | undefined;
    const remoteMeta = async () => {
      meta ??= await withRetries(ctx, () => fetchRemoteMeta(ctx.url, ctx));
      return meta;
    };

    const cached = await reuseFinalFile(ctx, pinned, remoteMeta);
    if (cached) return cached;

    const advertised = pinned === undefined ? await remoteMeta() : {};
    const expected = pinned ?? advertised.sha256;
    const result = await fetchAndVerify(ctx, expected, advertised.size);
    await rename(ctx.partial, ctx.dest);
    logger.info(
      { file, bytes: result.bytes, sha256: result.sha256, verified: expected !== undefined },
      'model file ready',
    );
    return { path: ctx.dest, ...result, downloaded: true, verified: expected !== undefined };
  } catch (err) {
    if (options.signal?.aborted) throw options.signal.reason;
    if (err instanceof EmbedpoolError) throw err;
    throw new EmbedpoolError('DOWNLOAD_FAILED', `${file}: ${errorMessage(err)}`, {
      cause: err,
      details: { file, url: redactUrl(ctx.url) },
    });
  } finally {
    await dispatcher.destroy().catch(() => undefined);
  }
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

/** Keeps a final file that matches what is expected; removes one that does not. */
async function reuseFinalFile(
  ctx: Context,
  pinned: string | undefined,
  remoteMeta: () => Promise<RemoteMeta>,
): Promise<DownloadResult | undefined> {
  const bytes = await sizeOf(ctx.dest);
  if (bytes === undefined) return undefined;
  let meta: RemoteMeta = {};
  if (pinned === undefined) {
    try {
      meta = await remoteMeta();
    } catch (err) {
      // Final names are only ever written after verification, so an unreachable server is no reason to refuse it.
      ctx.logger.warn(
        { file: ctx.file, err: errorMessage(err) },
        'cannot check cached file against the server; using it',
      );
      const sha256 = await sha256File(ctx.dest, ctx.signal);
      return { path: ctx.dest, sha256, bytes, resumedFrom: 0, downloaded: false, verified: false };
    }
  }
  const expected = pinned ?? meta.sha256;
  const sha256 = await sha256File(ctx.dest, ctx.signal);
  const matches =
    expected === undefined ? meta.size === undefined || meta.size === bytes : sha256 === expected;
  if (matches) {
    return {
      path: ctx.dest,
      sha256,
      bytes,
      resumedFrom: 0,
      downloaded: false,
      verified: expected !== undefined,
    };
  }
  ctx.logger.warn(
    { file: ctx.file, expected, actual: sha256 },
    'cached file does not match; downloading again',
  );
  await rm(ctx.dest, { force: true });
  return undefined;
}

async function fetchAndVerify(
  ctx: Context,
  expected: string | undefined,
  expectedSize: number | undefined,
  fresh = false,
): Promise<{ sha256: string; bytes: number; resumedFrom: number }> {
  const { resumedFrom, size } = await fetchToPartial(ctx, expectedSize);
  const bytes = (await sizeOf(ctx.partial)) ?? 0;
  const wantSize = expectedSize ?? size;
  const sha256 = await sha256File(ctx.partial, ctx.signal);
  const sizeOk = wantSize === undefined || wantSize === bytes;
  if (sizeOk && (expected === undefined || sha256 === expected)) return { sha256, bytes, resumedFrom };

  await rm(ctx.partial, { force: true });
  if (resumedFrom > 0 && !fresh) {
    // The resumed prefix came from an earlier run and may hold other bytes; one clean download settles it.
    ctx.logger.warn(
      { file: ctx.file },
      'resumed download failed verification; downloading again from scratch',
    );
    return fetchAndVerify(ctx, expected, expectedSize, true);
  }
  if (expected !== undefined && sha256 !== expected) {
    throw new EmbedpoolError(
      'DOWNLOAD_HASH_MISMATCH',
      `${ctx.file}: sha256 mismatch (expected ${expected}, got ${sha256}); the partial download was removed`,
      { details: { file: ctx.file, url: redactUrl(ctx.url), expected, actual: sha256, bytes } },
    );
  }
  throw new EmbedpoolError(
    'DOWNLOAD_FAILED',
    `${ctx.file}: size mismatch (expected ${wantSize} bytes, got ${bytes}); the partial download was removed`,
    { details: { file: ctx.file, url: redactUrl(ctx.url), expectedBytes: wantSize, bytes } },
  );
}

/** Fills the partial until the server has nothing more to send, resuming after every transient failure. */
async function fetchToPartial(
  ctx: Context,
  expectedSize: number | undefined,
): Promise<{ resumedFrom: number; size: number | undefined }> {
  let resumedFrom: number | undefined;
  let size = expectedSize;
  let failures = 0;
  for (let attempt = 1; ; attempt++) {
    ctx.signal?.throwIfAborted();
    let offset = (await sizeOf(ctx.partial)) ?? 0;
    if (size !== undefined && offset > size) {
      await rm(ctx.partial, { force: true });
      offset = 0;
    }
    resumedFrom ??= offset;
    if (size !== undefined && offset === size && offset > 0) {
      ctx.progress.done({ file: ctx.file, received: offset, total: size });
      return { resumedFrom, size };
    }
    if (offset > 0) ctx.logger.info({ file: ctx.file, offset }, 'resuming partial download');
    try {
      const outcome = await transferOnce({
        ...ctx,
        offset,
        onBytes: (received, total) => {
          if (total !== undefined) size = total;
          ctx.progress.update({ file: ctx.file, received, total: size });
        },
      });
      if (outcome.kind === 'complete') {
        const received = (await sizeOf(ctx.partial)) ?? 0;
        ctx.progress.done({ file: ctx.file, received, total: outcome.size ?? size });
        return { resumedFrom, size: outcome.size ?? size };
      }
      if (outcome.kind === 'unsatisfiable' && (outcome.size === undefined || outcome.size === offset)) {
        // The partial already holds the whole file; verification decides whether it is the right one.
        return { resumedFrom, size: outcome.size ?? size };
      }
      ctx.logger.warn(
        { file: ctx.file, offset, outcome },
        'server range does not fit the partial; starting over',
      );
      await rm(ctx.partial, { force: true });
      failures = await countFailure(
        ctx,
        failures,
        attempt,
        new Error(`range answer did not fit (${outcome.kind})`),
      );
    } catch (err) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      if (!isRetryable(err)) throw err;
      const progressed = ((await sizeOf(ctx.partial)) ?? 0) > offset;
      failures = await countFailure(ctx, progressed ? 0 : failures, attempt, err);
    }
  }
}

/** Records one failed attempt: gives up past the budget, otherwise waits out the backoff. */
async function countFailure(ctx: Context, previous: number, attempt: number, err: unknown): Promise<number> {
  const failures = previous + 1;
  if (failures > retryBudget(err, ctx.retries) || attempt >= MAX_ATTEMPTS) {
    // Say what is really on disk: a resumable partial, or nothing at all.
    const kept = (await sizeOf(ctx.partial)) ?? 0;
    const onDisk =
      kept > 0
        ? `the ${kept} bytes received so far are kept in ${ctx.partial} and the next run resumes from there`
        : 'nothing was written to the cache';
    throw new EmbedpoolError(
      'DOWNLOAD_FAILED',
      `${ctx.file}: download failed after ${attempt} attempt(s): ${errorMessage(err)}; ${onDisk}`,
      { cause: err, details: { file: ctx.file, url: redactUrl(ctx.url), attempts: attempt } },
    );
  }
  const wait = retryDelay(failures, ctx.retryDelayMs);
  ctx.logger.warn(
    { file: ctx.file, attempt, failures, waitMs: wait, err: errorMessage(err) },
    'download attempt failed; retrying',
  );
  await sleep(wait, ctx.signal);
  return failures;
}

/** Retries a request that has no partial to resume (the HEAD). */
async function withRetries<T>(ctx: Context, fn: () => Promise<T>): Promise<T> {
  let failures = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      if (!isRetryable(err)) throw err;
      failures = await countFailure(ctx, failures, attempt, err);
    }
  }
}
