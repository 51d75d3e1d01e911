import { type ErrorBody, isErrorCode } from './error-codes';

/**
 * A job's failure crosses Redis as BullMQ's `failedReason`, which is only the thrown error's message. The
 * code rides in that string as `CODE: message`, so the API (waiting for a /score job) and the job store can
 * answer the client with the worker's own code and its HTTP status instead of a generic INFERENCE_FAILED.
 * The prefix is one of ERROR_CODES or nothing: a library's message that merely looks like one is not read
 * as a code unless the code is ours. What a processor throws (BullMQ's errors) is in `queue/job-failure.ts`:
 * this codec stays free of BullMQ, so clients (the CLI's API commands) do not load it.
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
