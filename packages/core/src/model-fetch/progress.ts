import cliProgress from 'cli-progress';
import type { Logger } from '../logger';

export type ProgressMode = 'auto' | 'bar' | 'log' | 'none';

export interface ProgressEvent {
  /** Which file: the repository path for model files, the destination's name otherwise. */
  file: string;
  /** Bytes in the file so far, resumed bytes included. */
  received: number;
  /** Total size, when known. */
  total: number | undefined;
}

export type ProgressCallback = (event: ProgressEvent) => void;

export interface ProgressReporter {
  update(event: ProgressEvent): void;
  done(event: ProgressEvent): void;
}

const MB = 1024 * 1024;

export interface ProgressOptions {
  /** `auto`: a bar when stderr is a terminal, periodic log lines otherwise. */
  mode?: ProgressMode;
  onProgress?: ProgressCallback;
  logger: Logger;
  logIntervalMs?: number;
  callbackIntervalMs?: number;
}

/** Throttles per-chunk byte counts into what a person (bar), a log collector (lines) or a caller (callback) can use. */
export function createProgressReporter(options: ProgressOptions): ProgressReporter {
  const mode = options.mode ?? 'auto';
  const bar = mode === 'bar' || (mode === 'auto' && process.stderr.isTTY === true);
  const log = mode === 'log' || (mode === 'auto' && !bar);
  const sinks: ProgressReporter[] = [];
  if (options.onProgress) sinks.push(callbackSink(options.onProgress, options.callbackIntervalMs ?? 100));
  if (bar) sinks.push(barSink());
  else if (log) sinks.push(logSink(options.logger, options.logIntervalMs ?? 5_000));
  return {
    update: (e) => {
      for (const s of sinks) s.update(e);
    },
    done: (e) => {
      for (const s of sinks) s.done(e);
    },
  };
}

function callbackSink(onProgress: ProgressCallback, intervalMs: number): ProgressReporter {
  let last = 0;
  let lastEvent: ProgressEvent | undefined;
  // The final count tends to arrive twice (last chunk, then done); callers get it once.
  const emit = (e: ProgressEvent) => {
    if (lastEvent && lastEvent.file === e.file && lastEvent.received === e.received) return;
    lastEvent = e;
    onProgress(e);
  };
  return {
    update(e) {
      const now = Date.now();
      if (now - last < intervalMs && e.received !== e.total) return;
      last = now;
      emit(e);
    },
    done: emit,
  };
}

function logSink(logger: Logger, intervalMs: number): ProgressReporter {
  let last = 0;
  const line = (e: ProgressEvent, msg: string) => {
    const percent = e.total ? Math.round((e.received / e.total) * 1000) / 10 : undefined;
    logger.info({ file: e.file, received: e.received, total: e.total, percent }, msg);
  };
  return {
    update(e) {
      const now = Date.now();
      if (now - last < intervalMs) return;
      last = now;
      line(e, 'downloading model file');
    },
    done: (e) => line(e, 'downloaded model file'),
  };
}

function barSink(): ProgressReporter {
  let bar: cliProgress.SingleBar | undefined;
  let file: string | undefined;
  const payload = (e: ProgressEvent) => ({
    file: e.file,
    mb: (e.received / MB).toFixed(1),
    totalMb: e.total === undefined ? '?' : (e.total / MB).toFixed(1),
  });
  return {
    update(e) {
      if (!bar || file !== e.file) {
        bar?.stop();
        file = e.file;
        bar = new cliProgress.SingleBar(
          {
            stream: process.stderr,
            format: '{file} [{bar}] {percentage}% | {mb}/{totalMb} MB | ETA {eta_formatted}',
            hideCursor: true,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(e.total ?? 0, e.received, payload(e));
      }
      if (e.total !== undefined) bar.setTotal(e.total);
      bar.update(e.received, payload(e));
    },
    done(e) {
      if (bar && file === e.file) {
        bar.update(e.received, payload(e));
        bar.stop();
      }
      bar = undefined;
      file = undefined;
    },
  };
}
