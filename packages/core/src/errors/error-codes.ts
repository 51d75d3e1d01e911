/**
 * Every failure a user or operator can see carries a stable code. HTTP status is a property of the
 * code, so the API maps errors without string matching, and workers can tell a permanent input
 * problem (never retried) from a transient one.
 */
export const ERROR_CODES = {
  // Input images
  IMAGE_EMPTY: { status: 400, permanent: true },
  IMAGE_UNSUPPORTED_FORMAT: { status: 415, permanent: true },
  IMAGE_DECODE_FAILED: { status: 422, permanent: true },
  IMAGE_TOO_LARGE: { status: 413, permanent: true },
  IMAGE_TOO_MANY_PIXELS: { status: 422, permanent: true },
  IMAGE_DECODE_TIMEOUT: { status: 422, permanent: true },
  INVALID_BASE64: { status: 400, permanent: true },
  // Fetching images and callbacks on a user's behalf
  URL_INVALID: { status: 400, permanent: true },
  URL_SCHEME_NOT_ALLOWED: { status: 400, permanent: true },
  URL_CREDENTIALS_NOT_ALLOWED: { status: 400, permanent: true },
  URL_ADDRESS_NOT_ALLOWED: { status: 400, permanent: true },
  URL_DNS_FAILED: { status: 400, permanent: true },
  URL_TOO_MANY_REDIRECTS: { status: 400, permanent: true },
  URL_HTTP_STATUS: { status: 400, permanent: true },
  URL_TIMEOUT: { status: 400, permanent: true },
  URL_TOO_LARGE: { status: 413, permanent: true },
  URL_FETCH_FAILED: { status: 400, permanent: true },
  // Requests
  BAD_REQUEST: { status: 400, permanent: true },
  PAYLOAD_TOO_LARGE: { status: 413, permanent: true },
  TOO_MANY_IMAGES: { status: 413, permanent: true },
  NOT_FOUND: { status: 404, permanent: true },
  /** A concurrent request with the same Idempotency-Key is still creating its job: retry shortly. */
  CONFLICT: { status: 409, permanent: false },
  /** The record existed (or may have) but Redis lost its data: the id cannot be answered for any more. */
  STATE_LOST: { status: 410, permanent: true },
  UNAUTHORIZED: { status: 401, permanent: true },
  FORBIDDEN: { status: 403, permanent: true },
  RATE_LIMITED: { status: 429, permanent: false },
  OVERLOADED: { status: 429, permanent: false },
  TIMEOUT: { status: 504, permanent: false },
  UNAVAILABLE: { status: 503, permanent: false },
  // Models and runtime
  MODEL_INVALID: { status: 500, permanent: true },
  MODEL_NOT_FOUND: { status: 500, permanent: true },
  INFERENCE_FAILED: { status: 500, permanent: false },
  ENGINE_CLOSED: { status: 503, permanent: false },
  // Downloads of model files
  DOWNLOAD_FAILED: { status: 502, permanent: false },
  DOWNLOAD_HASH_MISMATCH: { status: 502, permanent: true },
  // Configuration
  CONFIG_INVALID: { status: 500, permanent: true },
  INTERNAL: { status: 500, permanent: false },
} as const satisfies Record<string, { status: number; permanent: boolean }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

export class EmbedpoolError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EmbedpoolError';
    this.code = code;
    this.details = options?.details;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  /** Permanent errors are the input's fault: retrying them can never succeed. */
  get permanent(): boolean {
    return ERROR_CODES[this.code].permanent;
  }

  toJSON(): ErrorBody {
    return { code: this.code, message: this.message };
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

/** Turns anything thrown into an EmbedpoolError, keeping a known code and wrapping the rest as INTERNAL. */
export function toEmbedpoolError(err: unknown, fallback: ErrorCode = 'INTERNAL'): EmbedpoolError {
  if (err instanceof EmbedpoolError) return err;
  if (err && typeof err === 'object' && 'code' in err && isErrorCode(err.code) && 'message' in err) {
    // A job failure's message starts with its code (see job-failure.ts); the code is said once.
    const message = String(err.message);
    const bare = message.startsWith(`${err.code}: `) ? message.slice(err.code.length + 2) : message;
    return new EmbedpoolError(err.code, bare, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new EmbedpoolError(fallback, message, { cause: err });
}
