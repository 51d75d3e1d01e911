import { EmbedpoolError, type ErrorCode } from '../errors';

/**
 * Storage failures become EmbedpoolErrors that keep the storage service's own code in
 * `details.storageCode` (and in the message), e.g. `BlobAlreadyExists`, `AuthorizationFailure`,
 * `ContainerNotFound`, `ECONNREFUSED`.
 *
 * Until errors/index.ts has storage codes of its own, these map onto existing ones:
 * - transient (network, 408/429/5xx, client timeout) -> UNAVAILABLE / TIMEOUT (retryable)
 * - auth failures and a missing container -> CONFIG_INVALID (permanent: retrying cannot help)
 * - an existing blob whose content differs (`details.reason: 'conflict'`) -> INTERNAL
 * - anything else -> INTERNAL
 */

// Node / undici / core-rest-pipeline codes for a request that never got an answer.
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'REQUEST_SEND_ERROR',
]);
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const TRANSIENT_STORAGE_CODES = new Set(['ServerBusy', 'OperationTimedOut', 'InternalError']);
const AUTH_STATUS = new Set([401, 403]);
const CONFIG_STORAGE_CODES = new Set(['ContainerNotFound', 'ContainerBeingDeleted', 'AccountIsDisabled']);

/** Code used when our own per-operation deadline (not the service) ended a request. */
export const CLIENT_TIMEOUT_CODE = 'ClientTimeout';

function field(err: unknown, key: string): unknown {
  return err && typeof err === 'object' && key in err ? (err as Record<string, unknown>)[key] : undefined;
}

/** HTTP status of a storage error, if the service answered. */
export function storageStatus(err: unknown): number | undefined {
  const status = field(err, 'statusCode');
  return typeof status === 'number' ? status : undefined;
}

/** The storage service's error code (x-ms-error-code), or the network code, or `HTTP_<status>`. */
export function storageErrorCode(err: unknown): string | undefined {
  const details = field(err, 'details');
  const fromDetails = field(details, 'errorCode');
  if (typeof fromDetails === 'string' && fromDetails) return fromDetails;
  const code = field(err, 'code');
  if (typeof code === 'string' && code) return code;
  if (field(err, 'name') === 'AbortError') return 'AbortError';
  const status = storageStatus(err);
  return status === undefined ? undefined : `HTTP_${status}`;
}

/** Worth another attempt: the request may succeed later without any change on our side. */
export function isTransientStorageError(err: unknown): boolean {
  if (err instanceof EmbedpoolError) return err.details?.transient === true;
  const code = storageErrorCode(err) ?? '';
  if (NETWORK_CODES.has(code) || TRANSIENT_STORAGE_CODES.has(code) || code === CLIENT_TIMEOUT_CODE)
    return true;
  const status = storageStatus(err);
  return status !== undefined && TRANSIENT_STATUS.has(status);
}

export function isBlobAlreadyExists(err: unknown): boolean {
  const status = storageStatus(err);
  const code = storageErrorCode(err);
  // Put Blob with If-None-Match: * answers 409 BlobAlreadyExists; some paths answer 412 ConditionNotMet.
  return (status === 409 && code === 'BlobAlreadyExists') || (status === 412 && code === 'ConditionNotMet');
}

export interface StorageErrorContext {
  op: string;
  container?: string;
  blob?: string;
  attempts?: number;
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0]!.slice(0, 300);
}

/** Wraps a storage SDK failure, keeping its code; an EmbedpoolError passes through unchanged. */
export function toStorageError(err: unknown, ctx: StorageErrorContext): EmbedpoolError {
  if (err instanceof EmbedpoolError) return err;
  const storageCode = storageErrorCode(err) ?? 'Unknown';
  const status = storageStatus(err);
  const transient = isTransientStorageError(err);
  let code: ErrorCode = 'INTERNAL';
  if (storageCode === CLIENT_TIMEOUT_CODE) code = 'TIMEOUT';
  else if (transient) code = 'UNAVAILABLE';
  else if ((status !== undefined && AUTH_STATUS.has(status)) || CONFIG_STORAGE_CODES.has(storageCode)) {
    code = 'CONFIG_INVALID';
  }
  const where = ctx.blob ? `${ctx.container}/${ctx.blob}` : (ctx.container ?? 'storage');
  const tries = ctx.attempts && ctx.attempts > 1 ? ` after ${ctx.attempts} attempts` : '';
  const http = status === undefined ? '' : ` (HTTP ${status})`;
  return new EmbedpoolError(
    code,
    `blob storage ${ctx.op} failed for ${where}${tries}: ${storageCode}${http}: ${firstLine(err)}`,
    {
      cause: err,
      details: {
        storageCode,
        status,
        transient,
        op: ctx.op,
        container: ctx.container,
        blob: ctx.blob,
        attempts: ctx.attempts,
      },
    },
  );
}
