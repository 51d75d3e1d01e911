/**
 * The fetch stage: one image reference to its encoded bytes. URLs are fetched under the URL policy
 * (core/net safe-fetch); base64 and data: URIs are decoded; inline refs are read from the job's inline
 * bytes (Redis or blob staging); ingestion blobs arrive already in hand.
 */
import { EmbedpoolError } from '@embedpool/core/errors';
import { safeFetch, type UrlPolicy } from '@embedpool/core/net';
import type { ImageRef, InlineReader, LoadedImage } from '@embedpool/core/queue';
import { inSpan } from '@embedpool/core/telemetry';
import type { WorkerMetrics } from '../metrics';

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;
const DATA_URI = /^data:([^;,]*)(?:;[^,]*)?;base64,/i;

export interface FetchOptions {
  policy: UrlPolicy;
  maxBytes: number;
  signal?: AbortSignal;
  inline?: InlineReader;
}

/** loadImageBytes as a traced stage (`fetch` span); URL fetches are timed in the `fetch` stage metric. */
export async function fetchImage(
  ref: ImageRef | LoadedImage,
  opts: FetchOptions,
  metrics?: WorkerMetrics,
): Promise<Uint8Array> {
  const started = performance.now();
  const bytes = await inSpan('fetch', { 'embedpool.image.kind': ref.kind }, () => loadImageBytes(ref, opts));
  if (ref.kind === 'url') metrics?.stage.observe({ stage: 'fetch' }, (performance.now() - started) / 1000);
  return bytes;
}

/**
 * The encoded bytes of one image: fetched under the URL policy, decoded from base64, read from the job's
 * inline bytes, or already in hand.
 */
export async function loadImageBytes(ref: ImageRef | LoadedImage, opts: FetchOptions): Promise<Uint8Array> {
  if (ref.kind === 'bytes' || ref.kind === 'inline') {
    const bytes = ref.kind === 'bytes' ? ref.bytes : await readInline(ref, opts.inline);
    if (bytes.byteLength === 0) throw new EmbedpoolError('IMAGE_EMPTY', 'image is empty');
    if (bytes.byteLength > opts.maxBytes)
      throw new EmbedpoolError('IMAGE_TOO_LARGE', `image is larger than ${opts.maxBytes} bytes`);
    return bytes;
  }
  if (ref.kind === 'url') {
    const res = await safeFetch(ref.url, opts.policy, opts.signal ? { signal: opts.signal } : {});
    return res.body;
  }
  return decodeBase64Image(ref.data, opts.maxBytes);
}

async function readInline(
  ref: Extract<ImageRef, { kind: 'inline' }>,
  inline: InlineReader | undefined,
): Promise<Uint8Array> {
  if (!inline) throw new EmbedpoolError('BAD_REQUEST', "inline image without its job's inline bytes");
  return (await inline.read(ref)).bytes;
}

export function decodeBase64Image(text: string, maxBytes: number): Uint8Array {
  const body = text.replace(DATA_URI, '');
  const compact = body.length > 0 && /\s/.test(body) ? body.replace(/\s+/g, '') : body;
  // 4 base64 characters carry 3 bytes: refuse oversize input before decoding it.
  if (Math.floor((compact.length * 3) / 4) > maxBytes + 2) {
    throw new EmbedpoolError('IMAGE_TOO_LARGE', `image is larger than ${maxBytes} bytes`);
  }
  if (!BASE64.test(compact))
    throw new EmbedpoolError('INVALID_BASE64', 'image is neither a URL nor valid base64');
  const bytes = Buffer.from(compact, compact.includes('-') || compact.includes('_') ? 'base64url' : 'base64');
  if (bytes.length === 0) throw new EmbedpoolError('IMAGE_EMPTY', 'image is empty');
  if (bytes.length > maxBytes)
    throw new EmbedpoolError('IMAGE_TOO_LARGE', `image is larger than ${maxBytes} bytes`);
  return bytes;
}
