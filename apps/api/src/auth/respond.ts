import type { Request, Response } from 'express';
import { requestLog } from '../request-context';

/** An answer given before any route ran: missing credentials, a rate limit, a full backlog. */
export interface Refusal {
  status: 401 | 403 | 429 | 503;
  /** UNAUTHORIZED, FORBIDDEN, RATE_LIMITED, OVERLOADED or UNAVAILABLE. */
  code: string;
  message: string;
  retryAfterS?: number;
  wwwAuthenticate?: string;
}

/** Routes that answer in OpenAI's error shape (the rest of the API keeps its own). */
function openAiShaped(req: Request): boolean {
  const path = req.originalUrl.split('?', 1)[0] ?? '';
  return path === '/v1/embeddings' || path.startsWith('/v1/embeddings/') || path === '/v1/models';
}

function openAiType(status: number): string {
  if (status === 429) return 'rate_limit_error';
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  return 'server_error';
}

/** Sends a refusal as JSON in the route's error shape, with Retry-After / WWW-Authenticate as given. */
export function refuse(req: Request, res: Response, r: Refusal): void {
  const log = res.locals.ctx ? requestLog(res) : undefined;
  log?.info({ status: r.status, code: r.code, reason: r.message }, 'request refused');
  if (r.retryAfterS !== undefined)
    res.setHeader('Retry-After', String(Math.max(1, Math.ceil(r.retryAfterS))));
  if (r.wwwAuthenticate) res.setHeader('WWW-Authenticate', r.wwwAuthenticate);
  res.setHeader('Cache-Control', 'no-store');
  if (openAiShaped(req)) {
    // OpenAI SDKs retry 429 and 5xx on their own; a bad credential never gets better by retrying.
    if (r.status === 401 || r.status === 403) res.setHeader('x-should-retry', 'false');
    res.status(r.status).json({
      error: { message: r.message, type: openAiType(r.status), param: null, code: r.code },
    });
    return;
  }
  res.status(r.status).json({ error: { code: r.code, message: r.message } });
}
