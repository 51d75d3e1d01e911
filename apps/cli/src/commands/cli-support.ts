import { stat } from 'node:fs/promises';
import { EmbedpoolError, toEmbedpoolError } from '@embedpool/core/errors';
import { prettyStream, resolveLogFormat } from '@embedpool/core/logger';
import { InvalidArgumentError } from 'commander';
import { destination, type Logger, pino } from 'pino';

/** Exit statuses shared by every command; scripts branch on them. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_PARTIAL = 2;

/**
 * A usage or environment problem the user can fix (missing file, bad config): printed as one line,
 * never with a stack trace, because the stack says nothing the message does not.
 */
export function reportError(err: unknown): void {
  const e = toEmbedpoolError(err);
  process.stderr.write(`embedpool: error: ${e.message} (${e.code})\n`);
  // Unexpected failures (bugs) keep their stack, on request, for whoever debugs them.
  if (process.env.EMBEDPOOL_DEBUG && err instanceof Error && !(err instanceof EmbedpoolError)) {
    process.stderr.write(`${err.stack}\n`);
  }
}

/**
 * Wraps a command action: its resolved number becomes the exit code, a throw becomes exit 1 with a
 * one-line message. process.exitCode rather than process.exit, so buffered stdout still drains.
 */
export function runAction<A extends unknown[]>(
  fn: (...args: A) => Promise<number | undefined>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      process.exitCode = (await fn(...args)) ?? EXIT_OK;
    } catch (err) {
      reportError(err);
      process.exitCode = EXIT_FAILURE;
    }
  };
}

function integer(value: string, min: number, what: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min) {
    throw new InvalidArgumentError(`must be ${what}.`);
  }
  return n;
}

/** commander argument parsers: a bad value is a usage error (exit 1) naming the flag. */
export const positiveInt = (value: string): number => integer(value, 1, 'a positive integer');
export const nonNegativeInt = (value: string): number => integer(value, 0, 'a non-negative integer');

/**
 * Logs go to stderr: stdout carries the command's result (a path, JSON lines) and must stay parseable.
 * LOG_LEVEL overrides the level, as in the services; lines are pretty on a terminal (LOG_FORMAT forces).
 */
export function cliLogger(name: string, level = 'info'): Logger {
  const tty = process.stderr.isTTY === true;
  return pino(
    {
      name,
      level: process.env.LOG_LEVEL ?? level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    resolveLogFormat(process.env.LOG_FORMAT, tty) === 'pretty' ? prettyStream(tty, 2) : destination(2),
  );
}

/** A clear MODEL_NOT_FOUND up front instead of onnxruntime's "failed to load model" from deep inside. */
export async function requireModelFile(path: string, what = 'model file'): Promise<number> {
  try {
    const s = await stat(path);
    if (s.isFile()) return s.size;
  } catch {
    // reported below
  }
  throw new EmbedpoolError('MODEL_NOT_FOUND', `${what} not found: ${path}`);
}

/**
 * onnxruntime 1.30's Linux telemetry runs a std::regex over /proc/self/cmdline when the first session is
 * created; the regex recurses per character, so `embed` with a few hundred paths overflows a worker
 * thread's 4 MiB stack (and ~40 KB of arguments overflows the main thread's): a segfault. It would also
 * try to upload events. Read from the environment at session creation, so setting it here is in time;
 * an explicit setting by the user is kept.
 */
export function disableOrtTelemetry(): void {
  process.env.ORT_DISABLE_TELEMETRY ??= '1';
}
