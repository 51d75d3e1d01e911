import { EmbedpoolError } from '@embedpool/core/errors';
import { safeFetch, type UrlPolicy } from '@embedpool/core/net';
import type { ImageRef } from '@embedpool/core/queue';

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;
const DATA_URI = /^data:([^;,]*)(?:;[^,]*)?;base64,/i;

/** The encoded bytes of one image: fetched under the URL policy, or decoded from base64. */
export async function loadImageBytes(
  ref: ImageRef,
  opts: { policy: UrlPolicy; maxBytes: number; signal?: AbortSignal },
): Promise<Uint8Array> {
  if (ref.kind === 'url') {
    const res = await safeFetch(ref.url, opts.policy, opts.signal ? { signal: opts.signal } : {});
    return res.body;
  }
  return decodeBase64Image(ref.data, opts.maxBytes);
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
