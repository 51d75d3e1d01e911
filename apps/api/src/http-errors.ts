import { EmbedpoolError, type ErrorCode, toEmbedpoolError } from '@embedpool/core/errors';
import { isRedisConnectionError } from '@embedpool/core/queue';
import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import { requestLog } from './request-context';

/** Seconds a client should wait before retrying a 503: long enough for a Redis reconnect to land. */
export const RETRY_AFTER_S = 2;

export interface RowFailure {
  /** Index into `input_data.data`. */
  row: number;
  code: ErrorCode;
  message: string;
}

/**
 * Per-image problems, found by the API or reported by a worker. They are the caller's to fix row by row,
 * so they are always one 400 listing every row, whatever status each code would carry on its own.
 */
export class RowFailuresError extends Error {
  constructor(readonly failures: RowFailure[]) {
    super(`${failures.length} row(s) failed`);
    this.name = 'RowFailuresError';
  }
}

export interface ErrorPayload {
  code: ErrorCode;
  message: string;
  row?: number;
  failures?: RowFailure[];
}

export interface HttpError {
  status: number;
  payload: ErrorPayload;
}

/** What body-parser and express's router throw (the http-errors shape): a 4xx status, maybe a type. */
interface ClientHttpError {
  type?: unknown;
  status: number;
  message: string;
}

function isClientHttpError(err: unknown): err is ClientHttpError {
  if (typeof err !== 'object' || err === null || !(err instanceof Error)) return false;
  const status = (err as { status?: unknown }).status;
  return typeof status === 'number' && status >= 400 && status < 500;
}

export function toHttpError(err: unknown): HttpError {
  if (err instanceof RowFailuresError) {
    const first = err.failures[0];
    if (!first) return { status: 400, payload: { code: 'BAD_REQUEST', message: 'request failed' } };
    const more = err.failures.length - 1;
    const suffix = more > 0 ? ` (and ${more} more row${more > 1 ? 's' : ''})` : '';
    return {
      status: 400,
      payload: {
        code: first.code,
        message: `row ${first.row}: ${first.message}${suffix}`,
        row: first.row,
        failures: err.failures,
      },
    };
  }
  if (err instanceof EmbedpoolError) {
    return { status: err.status, payload: { code: err.code, message: err.message } };
  }
  if (isClientHttpError(err)) {
    if (err.type === 'entity.too.large' || err.status === 413) {
      return { status: 413, payload: { code: 'PAYLOAD_TOO_LARGE', message: 'request body is too large' } };
    }
    if (err.type === 'entity.parse.failed') {
      return { status: 400, payload: { code: 'BAD_REQUEST', message: 'request body is not valid JSON' } };
    }
    if (err.status === 404) return { status: 404, payload: { code: 'NOT_FOUND', message: err.message } };
    // Unsupported charset or encoding, an aborted upload, an undecodable path: the client's fault.
    return { status: err.status, payload: { code: 'BAD_REQUEST', message: err.message } };
  }
  const e = toEmbedpoolError(err);
  if (e.code === 'INTERNAL' && isRedisConnectionError(err)) {
    // A read that met a Redis going away: the service is unavailable for a moment, nothing is broken.
    return { status: 503, payload: { code: 'UNAVAILABLE', message: 'redis is unreachable; retry shortly' } };
  }
  if (e.code === 'INTERNAL') {
    // Internal messages may name hosts, keys or stack details that are not the client's business.
    return { status: 500, payload: { code: 'INTERNAL', message: 'internal error' } };
  }
  return { status: e.status, payload: { code: e.code, message: e.message } };
}

export function sendError(res: Response, err: unknown): void {
  const { status, payload } = toHttpError(err);
  if (status >= 500) {
    requestLog(res).error({ err, status, code: payload.code }, 'request failed');
  } else {
    requestLog(res).info({ status, code: payload.code, reason: payload.message }, 'request rejected');
  }
  // 503: Redis or a dependency is away; 409: a concurrent request with the same Idempotency-Key is finishing.
  if (status === 503 || status === 409) res.setHeader('Retry-After', String(RETRY_AFTER_S));
  res.status(status).json({ error: payload });
}

export const notFoundHandler: RequestHandler = (req, res) => {
  sendError(res, new EmbedpoolError('NOT_FOUND', `no route for ${req.method} ${req.path}`));
};

/** The last middleware: every error, ours or express's, leaves as JSON, never as an HTML page. */
export const errorHandler: ErrorRequestHandler = (err, _req, res, _next) => {
  if (res.headersSent) {
    // Half a response cannot be turned into an error; cutting the connection at least tells the client.
    res.destroy(err instanceof Error ? err : undefined);
    return;
  }
  sendError(res, err);
};

/**
 * For routes that read or write only Redis (job and ingestion status): while the producer connection is down,
 * 503 with Retry-After at once, instead of whatever error the first command would meet.
 */
export function requireRedis(redis: { readonly status: string }): RequestHandler {
  return (_req, _res, next) => {
    if (redis.status === 'ready') return next();
    next(new EmbedpoolError('UNAVAILABLE', `redis is unreachable (${redis.status}); retry shortly`));
  };
}
