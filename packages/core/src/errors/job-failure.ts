import { UnrecoverableError } from 'bullmq';
import { EmbedpoolError, type ErrorBody, type ErrorCode, isErrorCode } from './error-codes';

/**
 * A job's failure crosses Redis as BullMQ's `failedReason`, which is only the thrown error's message. The
 * code rides in that string as `CODE: message`, so the API (waiting for a /score job) and the job store can
 * answer the client with the worker's own code and its HTTP status instead of a generic INFERENCE_FAILED.
 * The prefix is one of ERROR_CODES or nothing: a library's message that merely looks like one is not read
 * as a code unless the code is ours.
 */
const ENCODED = /^([A-Z][A-Z0-9_]*): ([\s\S]*)$/;

export function encodeJobFailure(err: ErrorBody): string {
  return `${err.code}: ${err.message}`;
}

/** The code and message a worker put in a failedReason, or undefined for a failure without one. */
export function decodeJobFailure(reason: string | null | undefined): ErrorBody | undefined {
  const m = reason ? ENCODED.exec(reason) : null;
  if (!m || !isErrorCode(m[1])) return undefined;
  return { code: m[1], message: m[2]! };
}

/**
 * A permanent refusal of a whole job (never retried). The error keeps `code` as a property too, so code in
 * the same process (a processor's own catch, toEmbedpoolError) reads it without parsing.
 */
export function permanentJobFailure(
  code: ErrorCode,
  message: string,
): UnrecoverableError & { code: ErrorCode } {
  return Object.assign(new UnrecoverableError(encodeJobFailure({ code, message })), { code });
}

/**
 * What a processor throws for `err`: an EmbedpoolError becomes an error whose message carries its code,
 * unrecoverable when the code is permanent (the input's fault), retryable otherwise; anything else as is.
 */
export function toJobFailure(err: unknown): unknown {
  if (!(err instanceof EmbedpoolError)) return err;
  if (err.permanent) return Object.assign(permanentJobFailure(err.code, err.message), { cause: err });
  return Object.assign(new Error(encodeJobFailure(err), { cause: err }), { code: err.code });
}
