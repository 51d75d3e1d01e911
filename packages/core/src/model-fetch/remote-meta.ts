import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { sha256FromEtag } from './hash';
import { failForStatus, headerValue, parseByteCount, requestFollowingRedirects } from './http';

export interface RemoteMeta {
  /** LFS sha256, from `X-Linked-Etag`; absent for small files kept in git itself. */
  sha256?: string;
  size?: number;
}

function firstHeader(all: IncomingHttpHeaders[], name: string): string | undefined {
  for (const headers of all) {
    const value = headerValue(headers, name);
    if (value !== undefined) return value;
  }
  return undefined;
}

/** What the server says about a file before any byte is fetched: the hash to check and the size to expect. */
export async function fetchRemoteMeta(
  url: string,
  options: { file: string; headers: Record<string, string>; signal?: AbortSignal; dispatcher: Dispatcher },
): Promise<RemoteMeta> {
  const res = await requestFollowingRedirects(url, { ...options, method: 'HEAD' });
  await res.body.dump().catch(() => undefined);
  // Servers without HEAD still serve the file; the GET's own length then bounds it.
  if (res.status === 405 || res.status === 501) return {};
  if (res.status < 200 || res.status > 299) failForStatus(res.status, { file: options.file, url: res.url });
  const all = [...res.redirects, res.headers];
  const sha256 = sha256FromEtag(firstHeader(all, 'x-linked-etag'));
  // A compressed answer's Content-Length is not the file's size.
  const plainLength =
    headerValue(res.headers, 'content-encoding') === undefined
      ? parseByteCount(headerValue(res.headers, 'content-length'))
      : undefined;
  const size = parseByteCount(firstHeader(all, 'x-linked-size')) ?? plainLength;
  const meta: RemoteMeta = {};
  if (sha256 !== undefined) meta.sha256 = sha256;
  if (size !== undefined) meta.size = size;
  return meta;
}
