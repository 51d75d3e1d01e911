import { createHash } from 'node:crypto';
import { loadLua } from '@embedpool/core/lua';
import type { RequestHandler } from 'express';
import type { Redis } from 'ioredis';
import { principalOf } from '../auth/middleware';
import { refuse } from '../auth/respond';

// lua/rate-limit-hit.lua: One fixed window per caller: the first request of a window sets its expiry; every request counts.
const HIT = loadLua('rate-limit-hit', import.meta.url);

export interface RateLimitOptions {
  /** Requests per window per caller; 0 turns the limiter off. */
  limit: number;
  windowS: number;
  prefix: string;
}

export function rateLimitKey(prefix: string, callerId: string): string {
  // Hashed: a JWT subject or an address is not something to splice into a Redis key as is.
  return `${prefix}:ratelimit:${createHash('sha256').update(callerId).digest('hex').slice(0, 32)}`;
}

export type RateDecision = { allowed: boolean; count: number; remaining: number; resetMs: number };

/** Counts a request against `callerId`'s window in Redis, so every API replica shares one count. */
export async function hit(redis: Redis, opts: RateLimitOptions, callerId: string): Promise<RateDecision> {
  const windowMs = opts.windowS * 1000;
  const [count, ttl] = (await redis.eval(HIT, 1, rateLimitKey(opts.prefix, callerId), windowMs)) as [
    number,
    number,
  ];
  return {
    allowed: count <= opts.limit,
    count,
    remaining: Math.max(0, opts.limit - count),
    resetMs: Math.max(0, ttl),
  };
}

/**
 * RATE_LIMIT_REQUESTS per RATE_LIMIT_WINDOW_S per caller (API key name, JWT subject, or the client address
 * when auth is off): 429 with Retry-After (seconds to the window's end) above it. With Redis unreachable
 * the request passes: it will meet the 503 the queue gives, and auth already stands in front of it.
 */
export function rateLimit(redis: Redis, opts: RateLimitOptions): RequestHandler {
  if (opts.limit <= 0) return (_req, _res, next) => next();
  return async (req, res, next) => {
    const p = principalOf(res);
    const caller = p.kind === 'anonymous' ? `ip:${req.socket.remoteAddress ?? 'unknown'}` : p.id;
    let d: RateDecision;
    try {
      if (redis.status !== 'ready') return next();
      d = await hit(redis, opts, caller);
    } catch {
      return next();
    }
    const resetS = Math.max(1, Math.ceil(d.resetMs / 1000));
    res.setHeader('RateLimit-Limit', String(opts.limit));
    res.setHeader('RateLimit-Remaining', String(d.remaining));
    res.setHeader('RateLimit-Reset', String(resetS));
    if (d.allowed) return next();
    refuse(req, res, {
      status: 429,
      code: 'RATE_LIMITED',
      message: `rate limit of ${opts.limit} requests per ${opts.windowS} s exceeded; retry in ${resetS} s`,
      retryAfterS: resetS,
    });
  };
}
