import { setTimeout as delay } from 'node:timers/promises';

/** A failure worth another attempt (network hiccup, 5xx, 429): retried with backoff, resuming from the partial. */
export class RetryableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RetryableError';
  }
}

// Node and undici codes for connections that failed or died; a filesystem error (ENOSPC, EACCES) is not here
// on purpose: retrying it would only fail again.
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
]);
const PERMANENT_UNDICI_CODES = new Set(['UND_ERR_ABORTED', 'UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED']);

/**
 * A host name that does not resolve (ENOTFOUND) is an answer, not a hiccup: offline, or a mistyped
 * HF_ENDPOINT. It gets one more try (a resolver can blip), not the whole backoff budget.
 */
export const NAME_NOT_RESOLVED_RETRIES = 1;

export function isNameNotResolved(err: unknown): boolean {
  return !!err && typeof err === 'object' && 'code' in err && err.code === 'ENOTFOUND';
}

/** How many failures in a row this error may add up to before the download gives up. */
export function retryBudget(err: unknown, retries: number): number {
  return isNameNotResolved(err) ? Math.min(retries, NAME_NOT_RESOLVED_RETRIES) : retries;
}

export function isRetryable(err: unknown): boolean {
  if (err instanceof RetryableError) return true;
  const code = err && typeof err === 'object' && 'code' in err ? String(err.code) : '';
  if (NETWORK_CODES.has(code)) return true;
  return code.startsWith('UND_ERR_') && !PERMANENT_UNDICI_CODES.has(code);
}

export const DEFAULT_RETRY_DELAY_MS = 500;
const MAX_RETRY_DELAY_MS = 8_000;

/** Exponential backoff, capped so a long outage costs seconds per attempt, not minutes. */
export function retryDelay(failures: number, baseMs: number): number {
  return Math.min(baseMs * 2 ** Math.max(0, failures - 1), MAX_RETRY_DELAY_MS);
}

/** Sleeps, but an abort ends the wait at once with the signal's own reason. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0) return;
  try {
    await delay(ms, undefined, signal ? { signal } : undefined);
  } catch (err) {
    throw signal?.aborted ? signal.reason : err;
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = 'code' in err && err.code ? ` (${String(err.code)})` : '';
    return `${err.message}${code}`;
  }
  return String(err);
}
