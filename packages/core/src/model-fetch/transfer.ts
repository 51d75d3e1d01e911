import { open } from 'node:fs/promises';
import type { Dispatcher } from 'undici';
import { failForStatus, headerValue, parseByteCount, redactUrl, requestFollowingRedirects } from './http';
import { RetryableError } from './retry';

export type TransferOutcome =
  /** The body arrived in full; `size` is the file's total size when the server said so. */
  | { kind: 'complete'; size: number | undefined }
  /** 416: nothing left to send from `offset`; `size` is the total from `Content-Range: bytes *\/N`. */
  | { kind: 'unsatisfiable'; size: number | undefined }
  /** The server answered a range we did not ask for: the partial cannot be trusted to line up. */
  | { kind: 'misaligned' };

export interface TransferOptions {
  url: string;
  file: string;
  partial: string;
  /** Bytes already in the partial; a Range request resumes after them. */
  offset: number;
  headers: Record<string, string>;
  signal?: AbortSignal;
  dispatcher: Dispatcher;
  onBytes: (received: number, total: number | undefined) => void;
}

function parseContentRange(
  value: string | undefined,
): { start: number; total: number | undefined } | undefined {
  const m = value?.match(/^bytes (\d+)-\d+\/(\d+|\*)$/);
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[2] === '*' ? undefined : Number(m[2]) };
}

/** One GET: appends to the partial on 206, rewrites it on 200. Network failures propagate for the caller to retry. */
export async function transferOnce(options: TransferOptions): Promise<TransferOutcome> {
  const headers = { ...options.headers };
  if (options.offset > 0) headers.range = `bytes=${options.offset}-`;
  const res = await requestFollowingRedirects(options.url, { ...options, method: 'GET', headers });

  let start: number;
  let total: number | undefined;
  if (res.status === 206 && options.offset > 0) {
    const range = parseContentRange(headerValue(res.headers, 'content-range'));
    if (range?.start !== options.offset) {
      await res.body.dump().catch(() => undefined);
      return { kind: 'misaligned' };
    }
    start = options.offset;
    total = range.total;
  } else if (res.status === 200) {
    // Either a fresh download or a server that ignored Range: both mean starting from byte zero.
    start = 0;
    const encoded = headerValue(res.headers, 'content-encoding') !== undefined;
    total = encoded ? undefined : parseByteCount(headerValue(res.headers, 'content-length'));
  } else if (res.status === 416 && options.offset > 0) {
    await res.body.dump().catch(() => undefined);
    const m = headerValue(res.headers, 'content-range')?.match(/^bytes \*\/(\d+)$/);
    return { kind: 'unsatisfiable', size: m ? Number(m[1]) : undefined };
  } else {
    await res.body.dump().catch(() => undefined);
    failForStatus(res.status, { file: options.file, url: res.url });
  }

  let received = start;
  options.onBytes(received, total);
  // Each chunk is written before the next is read, so after any failure the partial is a clean prefix of
  // the file (chunks still buffered when the socket died are lost, not misplaced) and the next attempt
  // resumes from its size.
  const fh = await open(options.partial, start > 0 ? 'a' : 'w');
  try {
    for await (const chunk of res.body) {
      await fh.write(chunk as Buffer);
      received += (chunk as Buffer).length;
      options.onBytes(received, total);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  if (total !== undefined && received < total) {
    throw new RetryableError(
      `${options.file}: connection closed after ${received} of ${total} bytes from ${redactUrl(res.url)}`,
    );
  }
  return { kind: 'complete', size: total };
}
