import { UnrecoverableError } from 'bullmq';
import { EmbedpoolError, type ErrorCode, encodeJobFailure } from '../errors';

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
