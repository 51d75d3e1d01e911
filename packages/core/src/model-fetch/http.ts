import type { IncomingHttpHeaders } from 'node:http';
import { Agent, type Dispatcher, request } from 'undici';
import { EmbedpoolError } from '../errors';
import { RetryableError } from './retry';

export interface Timeouts {
  /** TCP + TLS connect. */
  connectMs?: number;
  /** Longest wait for response headers, or between two body chunks: a stalled transfer is cut and resumed. */
  idleMs?: number;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

export function createDispatcher(timeouts: Timeouts = {}): Agent {
  const idle = timeouts.idleMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  return new Agent({
    connect: { timeout: timeouts.connectMs ?? DEFAULT_CONNECT_TIMEOUT_MS },
    headersTimeout: idle,
    bodyTimeout: idle,
  });
}

export interface HttpResponse {
  /** URL of the hop that answered (after redirects). */
  url: URL;
  status: number;
  headers: IncomingHttpHeaders;
  /** Headers of the redirect hops, first to last: the hub puts `X-Linked-Etag` on its 302, not on the CDN's answer. */
  redirects: IncomingHttpHeaders[];
  body: Dispatcher.ResponseData['body'];
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 8;
const CREDENTIAL_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization']);

export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Signed CDN URLs carry credentials in the query string: never log it. */
export function redactUrl(url: string | URL): string {
  const u = typeof url === 'string' ? new URL(url) : url;
  return `${u.origin}${u.pathname}`;
}

function lowerCaseKeys(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

/**
 * Follows redirects by hand so credentials go only to the origin the caller addressed: the hub redirects
 * file downloads to a CDN, which must never see the HF token.
 */
export async function requestFollowingRedirects(
  url: string,
  options: {
    method: 'GET' | 'HEAD';
    headers: Record<string, string>;
    signal?: AbortSignal;
    dispatcher: Dispatcher;
  },
): Promise<HttpResponse> {
  const first = new URL(url);
  const headers = lowerCaseKeys(options.headers);
  const withoutCredentials = Object.fromEntries(
    Object.entries(headers).filter(([k]) => !CREDENTIAL_HEADERS.has(k)),
  );
  const redirects: IncomingHttpHeaders[] = [];
  let current = first;
  for (;;) {
    const res = await request(current, {
      method: options.method,
      headers: current.origin === first.origin ? headers : withoutCredentials,
      signal: options.signal ?? null,
      dispatcher: options.dispatcher,
    });
    if (!REDIRECT_STATUSES.has(res.statusCode)) {
      return { url: current, status: res.statusCode, headers: res.headers, redirects, body: res.body };
    }
    await res.body.dump().catch(() => undefined);
    redirects.push(res.headers);
    const location = headerValue(res.headers, 'location');
    if (!location) {
      throw new RetryableError(`redirect ${res.statusCode} without Location from ${redactUrl(current)}`);
    }
    const next = new URL(location, current);
    if (redirects.length > MAX_REDIRECTS) {
      throw new EmbedpoolError('DOWNLOAD_FAILED', `too many redirects fetching ${redactUrl(first)}`);
    }
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new EmbedpoolError('DOWNLOAD_FAILED', `redirect to unsupported scheme ${next.protocol}`);
    }
    if (current.protocol === 'https:' && next.protocol === 'http:') {
      throw new EmbedpoolError('DOWNLOAD_FAILED', `refusing https -> http redirect to ${redactUrl(next)}`);
    }
    current = next;
  }
}

/** Turns a status the caller did not expect into the error the operator should see. */
export function failForStatus(status: number, context: { file: string; url: string | URL }): never {
  const where = redactUrl(context.url);
  const details = { file: context.file, url: where, status };
  if (status === 404) {
    throw new EmbedpoolError('MODEL_NOT_FOUND', `${context.file}: not found (HTTP 404) at ${where}`, {
      details,
    });
  }
  if (status === 401 || status === 403) {
    throw new EmbedpoolError(
      'DOWNLOAD_FAILED',
      `${context.file}: access denied (HTTP ${status}) at ${where}; set HF_TOKEN to a Hugging Face token ` +
        'that can read this repository (gated or private repositories need one)',
      { details },
    );
  }
  if (status === 408 || status === 429 || status >= 500) {
    throw new RetryableError(`${context.file}: HTTP ${status} from ${where}`);
  }
  throw new EmbedpoolError('DOWNLOAD_FAILED', `${context.file}: unexpected HTTP ${status} from ${where}`, {
    details,
  });
}

/** A byte count from a header; undefined when absent or not a plain non-negative integer. */
export function parseByteCount(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value.trim());
}
