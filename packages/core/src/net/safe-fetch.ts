/**
 * Fetching a stranger-supplied URL: every hop is checked by the policy, the socket is pinned to the
 * checked addresses, redirects are followed by hand (GET/HEAD only), and time and size are bounded.
 */
import { pipeline, type Readable, Transform } from 'node:stream';
import { Agent, request } from 'undici';
import { EmbedpoolError } from '../errors';
import { pinnedLookup } from './resolve';
import { bareHostname, checkUrl, parseTargetUrl, type UrlPolicy } from './url-policy';

export interface SafeFetchInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  signal?: AbortSignal;
}

export type ResponseHeaders = Record<string, string | string[] | undefined>;

export interface SafeFetchResponse {
  status: number;
  headers: ResponseHeaders;
  body: Buffer;
  finalUrl: string;
}

export interface SafeFetchStreamResponse {
  status: number;
  headers: ResponseHeaders;
  /**
   * The body, capped at maxBytes; fails with URL_TOO_LARGE / URL_TIMEOUT. Consume it (with an
   * 'error' handler, as for any stream) or destroy it: either releases the connection and the deadline.
   */
  body: Readable;
  finalUrl: string;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Dropped when a redirect leaves the origin they were meant for. */
const CREDENTIAL_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];
/** Never taken from the caller: they would change what is connected to or how the body is framed. */
const FORBIDDEN_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'upgrade']);

interface Deadline {
  signal: AbortSignal;
  timedOut(): boolean;
  dispose(): void;
}

/** The total deadline, and the caller's signal folded into it. */
function startDeadline(ms: number, outer: AbortSignal | undefined): Deadline {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(timeoutError('total', ms));
  }, ms);
  const onOuter = () => controller.abort(outer?.reason);
  if (outer?.aborted) onOuter();
  else outer?.addEventListener('abort', onOuter, { once: true });
  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    dispose() {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuter);
    },
  };
}

function timeoutError(kind: 'connect' | 'headers' | 'body' | 'total', ms: number): EmbedpoolError {
  const what = { connect: 'connect', headers: 'response headers', body: 'body idle', total: 'total' }[kind];
  return new EmbedpoolError('URL_TIMEOUT', `${what} timeout of ${ms} ms exceeded`, {
    details: { timeout: kind, ms },
  });
}

function tooLarge(maxBytes: number, contentLength?: number): EmbedpoolError {
  const message =
    contentLength === undefined
      ? `response body exceeds ${maxBytes} bytes`
      : `response Content-Length ${contentLength} exceeds ${maxBytes} bytes`;
  return new EmbedpoolError('URL_TOO_LARGE', message, { details: { maxBytes, contentLength } });
}

/** An EmbedpoolError raised inside a socket callback (pinned lookup) may arrive wrapped. */
function findEmbedpoolError(err: unknown, depth = 0): EmbedpoolError | undefined {
  if (err instanceof EmbedpoolError) return err;
  if (!err || typeof err !== 'object' || depth > 4) return undefined;
  const nested = [
    ...('cause' in err ? [err.cause] : []),
    ...(err instanceof AggregateError ? err.errors : []),
  ];
  for (const e of nested) {
    const found = findEmbedpoolError(e, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/** Turns whatever undici or the socket threw into the error the caller should see. */
function toFetchError(err: unknown, policy: UrlPolicy, deadline: Deadline, outer?: AbortSignal): unknown {
  if (deadline.timedOut()) return timeoutError('total', policy.totalTimeoutMs);
  if (outer?.aborted) return outer.reason;
  const known = findEmbedpoolError(err);
  if (known) return known;
  const code = err && typeof err === 'object' && 'code' in err ? String(err.code) : undefined;
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return timeoutError('connect', policy.connectTimeoutMs);
    case 'UND_ERR_HEADERS_TIMEOUT':
      return timeoutError('headers', policy.headersTimeoutMs);
    case 'UND_ERR_BODY_TIMEOUT':
      return timeoutError('body', policy.bodyTimeoutMs);
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return tooLarge(policy.maxBytes);
  }
  const message = err instanceof Error ? err.message : String(err);
  return new EmbedpoolError('URL_FETCH_FAILED', `fetch failed: ${message}`, {
    cause: err,
    details: { code },
  });
}

/** One dispatcher per hop, whose sockets can only reach the addresses that hop was checked for. */
function pinnedAgent(url: URL, addresses: string[], policy: UrlPolicy): Agent {
  return new Agent({
    connect: {
      timeout: policy.connectTimeoutMs,
      lookup: pinnedLookup(bareHostname(url), addresses),
    },
    headersTimeout: policy.headersTimeoutMs,
    bodyTimeout: policy.bodyTimeoutMs,
    // Backstop for the streaming cap below.
    maxResponseSize: policy.maxBytes,
    connections: 1,
    pipelining: 0,
  });
}

function requestHeaders(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (!FORBIDDEN_HEADERS.has(name.toLowerCase())) out[name] = value;
  }
  return out;
}

function withoutCredentials(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(headers).filter(([name]) => !CREDENTIAL_HEADERS.includes(name.toLowerCase())),
  );
}

/** Passes the body through, failing with URL_TOO_LARGE once more than `maxBytes` have arrived. */
function capBody(
  source: Readable,
  maxBytes: number,
  mapError: (err: unknown) => unknown,
  done: () => void,
): Readable {
  let received = 0;
  const capped = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > maxBytes) callback(tooLarge(maxBytes));
      else callback(null, chunk);
    },
    destroy(err, callback) {
      callback(err ? (mapError(err) as Error) : null);
    },
  });
  // pipeline destroys the socket's body when `capped` fails or is destroyed by the consumer.
  pipeline(source, capped, () => done());
  return capped;
}

function destroyQuietly(agent: Agent | undefined): void {
  agent?.destroy().catch(() => {});
}

/** Discards a response body we will not read (destroying it emits an abort error nobody needs). */
function discard(body: Readable): void {
  body.on('error', () => {});
  body.destroy();
}

/**
 * Fetches `input` under `policy` and returns the response with its body as a capped stream.
 * Non-2xx is URL_HTTP_STATUS. Redirects are followed (re-checked each hop) only for GET and HEAD;
 * for any other method a 3xx is URL_HTTP_STATUS.
 */
export async function safeFetchStream(
  input: string,
  policy: UrlPolicy,
  init: SafeFetchInit = {},
): Promise<SafeFetchStreamResponse> {
  const method = (init.method ?? 'GET').toUpperCase();
  const followRedirects = method === 'GET' || method === 'HEAD';
  const deadline = startDeadline(policy.totalTimeoutMs, init.signal);
  const mapError = (err: unknown) => toFetchError(err, policy, deadline, init.signal);
  let headers = requestHeaders(init.headers);
  let target: string | URL = input;
  let agent: Agent | undefined;
  try {
    for (let redirects = 0; ; redirects++) {
      const { url, addresses } = await checkUrl(target, policy, { signal: deadline.signal });
      agent = pinnedAgent(url, addresses, policy);
      const res = await request(url, {
        dispatcher: agent,
        method: method as 'GET',
        headers,
        body: init.body ?? null,
        signal: deadline.signal,
      });
      const location = res.headers.location;
      if (followRedirects && REDIRECTS.has(res.statusCode) && typeof location === 'string') {
        discard(res.body);
        destroyQuietly(agent);
        agent = undefined;
        if (redirects >= policy.maxRedirects) {
          throw new EmbedpoolError('URL_TOO_MANY_REDIRECTS', `more than ${policy.maxRedirects} redirects`, {
            details: { maxRedirects: policy.maxRedirects },
          });
        }
        const next = parseTargetUrl(location, url);
        if (next.origin !== url.origin) headers = withoutCredentials(headers);
        target = next;
        continue;
      }
      if (res.statusCode < 200 || res.statusCode > 299) {
        discard(res.body);
        throw new EmbedpoolError('URL_HTTP_STATUS', `HTTP status ${res.statusCode}`, {
          details: { status: res.statusCode },
        });
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > policy.maxBytes) {
        discard(res.body);
        throw tooLarge(policy.maxBytes, declared);
      }
      const owned = agent;
      agent = undefined;
      const body = capBody(res.body, policy.maxBytes, mapError, () => {
        destroyQuietly(owned);
        deadline.dispose();
      });
      return { status: res.statusCode, headers: res.headers, body, finalUrl: url.href };
    }
  } catch (err) {
    destroyQuietly(agent);
    deadline.dispose();
    throw mapError(err);
  }
}

/** Like safeFetchStream, but reads the whole (capped) body into a Buffer. */
export async function safeFetch(
  input: string,
  policy: UrlPolicy,
  init: SafeFetchInit = {},
): Promise<SafeFetchResponse> {
  const res = await safeFetchStream(input, policy, init);
  const chunks: Buffer[] = [];
  for await (const chunk of res.body) chunks.push(chunk as Buffer);
  return { status: res.status, headers: res.headers, body: Buffer.concat(chunks), finalUrl: res.finalUrl };
}
