import { type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger };

/**
 * One structured logger for every process. Child loggers carry `jobId` / `requestId` so a request can
 * be followed from the API through the queue into the worker.
 */
export function createLogger(options: { name: string; level?: string } & LoggerOptions): Logger {
  return pino({
    level: options.level ?? process.env.LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info'),
    base: { service: options.name, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...options,
  });
}
