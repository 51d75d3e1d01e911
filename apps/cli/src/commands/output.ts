import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, rmSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import { EmbedpoolError } from '@embedpool/core/errors';

/** Where result lines go: written one at a time with backpressure, published only by `commit`. */
export interface LineSink {
  write(line: string): Promise<void>;
  /** Makes the output visible (file: renamed into place). */
  commit(): Promise<void>;
  /** Drops what was written (file: the temp file is removed). Safe to call after commit or twice. */
  abort(): Promise<void>;
  /** The same as `abort`, for signal handlers that cannot await. */
  abortSync(): void;
}

function outputError(target: string, err: unknown): EmbedpoolError {
  const message = err instanceof Error ? err.message : String(err);
  return new EmbedpoolError('INTERNAL', `cannot write ${target}: ${message}`, { cause: err });
}

/** Resolves once `chunk` is accepted; waits for 'drain' when the stream's buffer is full. */
function writeTo(stream: Writable, chunk: string, state: { error?: unknown }, target: string): Promise<void> {
  if (state.error !== undefined) return Promise.reject(outputError(target, state.error));
  return new Promise((resolve, reject) => {
    const onError = (err: unknown) => {
      stream.off('drain', onDrain);
      reject(outputError(target, err));
    };
    const onDrain = () => {
      stream.off('error', onError);
      resolve();
    };
    if (stream.write(chunk)) {
      resolve();
      return;
    }
    stream.once('drain', onDrain);
    stream.once('error', onError);
  });
}

function stdoutSink(): LineSink {
  const state: { error?: unknown } = {};
  // A reader that goes away (`| head`) makes stdout emit EPIPE; without a listener that is a crash.
  process.stdout.on('error', (err) => {
    state.error = err;
  });
  return {
    write: (line) => writeTo(process.stdout, line, state, 'stdout'),
    commit: async () => {
      if (state.error !== undefined) throw outputError('stdout', state.error);
    },
    abort: async () => {},
    abortSync: () => {},
  };
}

/**
 * Writes beside the destination and renames at the end, so a crash or Ctrl-C never leaves a truncated
 * file under the final name, and an existing file is replaced only by a complete one.
 */
async function fileSink(out: string): Promise<LineSink> {
  const tmp = join(dirname(out), `.${basename(out)}.${randomBytes(6).toString('hex')}.tmp`);
  const stream = createWriteStream(tmp, { flags: 'wx' });
  // Fail now (missing directory, no permission), before a model is loaded and files are decoded.
  try {
    await once(stream, 'open');
  } catch (err) {
    throw outputError(out, err);
  }
  const state: { error?: unknown } = {};
  stream.on('error', (err) => {
    state.error = err;
  });
  let done = false;
  return {
    write: (line) => writeTo(stream, line, state, out),
    async commit() {
      await new Promise<void>((resolve, reject) => {
        if (state.error !== undefined) reject(outputError(out, state.error));
        else
          stream.end(() => (state.error === undefined ? resolve() : reject(outputError(out, state.error))));
      });
      try {
        await rename(tmp, out);
        done = true;
      } catch (err) {
        throw outputError(out, err);
      }
    },
    async abort() {
      if (done) return;
      done = true;
      stream.destroy();
      await rm(tmp, { force: true });
    },
    abortSync() {
      if (done) return;
      done = true;
      stream.destroy();
      rmSync(tmp, { force: true });
    },
  };
}

/** `out` undefined or '-': stdout. */
export async function openLineSink(out: string | undefined): Promise<LineSink> {
  return out === undefined || out === '-' ? stdoutSink() : fileSink(out);
}
