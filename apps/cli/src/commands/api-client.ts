/**
 * The one HTTP client of every CLI command that talks to a running API (submit, status, ingest,
 * ingestions ...): where the API is (`--url`, `$EMBEDPOOL_URL`), who is calling (`--api-key`,
 * `$EMBEDPOOL_API_KEY`, sent as `Authorization: Bearer`), how long to wait (`--timeout`), and the service's
 * error codes turned into one line (`POST /v1/ingestions: HTTP 401: ... (UNAUTHORIZED)`).
 */
import { EmbedpoolError, type ErrorCode, isErrorCode } from '@embedpool/core/errors';
import { type Command, InvalidArgumentError, Option } from 'commander';

export const DEFAULT_API_URL = 'http://127.0.0.1:8080';
/** Reads (GET, DELETE): an API that does not answer in this long is treated as unreachable. */
export const READ_TIMEOUT_MS = 60_000;

/** The flags every API-talking command takes (commander fills them in). */
export interface ApiOptions {
  url?: string;
  apiKey?: string;
  /** Seconds. */
  timeout?: number;
}

/** A non-2xx answer of the API, with the service's error code when it sent one. */
export class ApiError extends EmbedpoolError {
  constructor(
    readonly httpStatus: number,
    code: ErrorCode,
    message: string,
    readonly failures: { row: number; code: string; message: string }[] = [],
  ) {
    super(code, message);
    this.name = 'ApiError';
  }
}

interface ErrorBody {
  error?: { code?: unknown; message?: unknown; failures?: { row: number; code: string; message: string }[] };
}

function isHttpUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const { protocol } = new URL(value);
  return protocol === 'http:' || protocol === 'https:';
}

/** --url, else $EMBEDPOOL_URL, else http://127.0.0.1:$PORT (8080); without a trailing slash. */
export function apiBaseUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const local = env.PORT && env.PORT !== '0' ? `http://127.0.0.1:${env.PORT}` : DEFAULT_API_URL;
  const url = flag ?? env.EMBEDPOOL_URL ?? local;
  if (!isHttpUrl(url)) {
    throw new EmbedpoolError('BAD_REQUEST', `API URL ${JSON.stringify(url)} is not an http(s) URL (--url)`);
  }
  return url.replace(/\/+$/, '');
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 86_400) throw new InvalidArgumentError('must be seconds, > 0.');
  return n;
}

/** Adds `--url`, `--api-key` and `--timeout` to a command. */
export function apiOptions(cmd: Command): Command {
  return cmd
    .option('--url <url>', `API base URL (default: $EMBEDPOOL_URL, else ${DEFAULT_API_URL} or $PORT)`)
    .addOption(
      new Option(
        '--api-key <key>',
        'API key, sent as Authorization: Bearer (default: $EMBEDPOOL_API_KEY; prefer the variable: a flag ' +
          'shows in process lists)',
      ),
    )
    .option('--timeout <seconds>', `per-request time limit (default ${READ_TIMEOUT_MS / 1000})`, seconds);
}

export class ApiClient {
  readonly base: string;
  private readonly apiKey: string | undefined;
  private readonly timeoutMs: number | undefined;

  constructor(opts: ApiOptions = {}, env: NodeJS.ProcessEnv = process.env) {
    this.base = apiBaseUrl(opts.url, env);
    this.apiKey = opts.apiKey ?? (env.EMBEDPOOL_API_KEY || undefined);
    this.timeoutMs = opts.timeout !== undefined ? opts.timeout * 1000 : undefined;
  }

  /**
   * One request; a non-2xx answer throws an ApiError carrying the service's code, a network failure or a
   * time-out throws UNAVAILABLE. `timeoutMs` is the call's own default; `--timeout` overrides it.
   */
  async request<T>(
    method: string,
    path: string,
    opts: { body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {},
  ): Promise<{ status: number; body: T }> {
    const url = `${this.base}${path}`;
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          accept: 'application/json',
          ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}),
          ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...opts.headers,
        },
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
        signal: AbortSignal.timeout(this.timeoutMs ?? opts.timeoutMs ?? READ_TIMEOUT_MS),
      });
    } catch (err) {
      const e = err as Error & { cause?: { message?: string } };
      const why = e.name === 'TimeoutError' ? 'no answer in time' : (e.cause?.message ?? e.message);
      throw new EmbedpoolError(
        'UNAVAILABLE',
        `cannot reach the API at ${this.base} (${method} ${path}): ${why}`,
      );
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    if (!res.ok) {
      const err = (body as ErrorBody | undefined)?.error;
      const code = isErrorCode(err?.code)
        ? err.code
        : res.status === 401
          ? 'UNAUTHORIZED'
          : res.status === 403
            ? 'FORBIDDEN'
            : res.status === 404
              ? 'NOT_FOUND'
              : res.status >= 500
                ? 'INTERNAL'
                : 'BAD_REQUEST';
      const raw = typeof err?.message === 'string' ? err.message : text.slice(0, 200) || res.statusText;
      const hint = res.status === 401 && !this.apiKey ? ' (set EMBEDPOOL_API_KEY or --api-key)' : '';
      throw new ApiError(
        res.status,
        code,
        `${method} ${path}: HTTP ${res.status}: ${raw.split('\n')[0]}${hint}`,
        err?.failures,
      );
    }
    if (body === undefined) {
      throw new EmbedpoolError('INTERNAL', `${method} ${path}: HTTP ${res.status} without a JSON body`);
    }
    return { status: res.status, body: body as T };
  }

  async get<T>(path: string): Promise<T> {
    return (await this.request<T>('GET', path)).body;
  }
}

/** Worth another poll: the API or its Redis is briefly away, or it asks us to slow down. */
export function isTransientApiError(err: unknown): boolean {
  if (err instanceof ApiError) return err.httpStatus >= 500 || err.httpStatus === 429;
  return err instanceof EmbedpoolError && (err.code === 'UNAVAILABLE' || err.code === 'TIMEOUT');
}
