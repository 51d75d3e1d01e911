import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export type LogFormat = 'auto' | 'json' | 'pretty';

/**
 * `pretty` for a person at a terminal, `json` for everything else (log shippers, files, pipes). `auto`
 * (LOG_FORMAT unset) decides by whether stdout is a TTY; LOG_FORMAT forces either.
 */
export function resolveLogFormat(
  format: string | undefined = process.env.LOG_FORMAT,
  isTty: boolean = process.stdout.isTTY === true,
): 'json' | 'pretty' {
  if (format === 'json' || format === 'pretty') return format;
  return isTty ? 'pretty' : 'json';
}

/**
 * One line per entry, in the order written (sync: a line logged just before process.exit is not lost),
 * colours only on a terminal. Fields stay on the line as key=value pairs for grep.
 */
export function prettyStream(colorize: boolean, fd: 1 | 2 = 1): DestinationStream {
  return pretty({
    destination: fd,
    colorize,
    singleLine: true,
    sync: true,
    translateTime: 'SYS:HH:MM:ss.l',
    // The service is the name in parentheses; an error is its message on the same line (its stack is in
    // the JSON format, LOG_FORMAT=json), never an indented block that breaks one-line-per-entry.
    ignore: 'pid,hostname,service,err',
    messageFormat: (log, messageKey) => {
      const msg = String(log[messageKey] ?? '');
      const err = log.err as { message?: unknown; type?: unknown } | string | undefined;
      if (err === undefined) return msg;
      const text = typeof err === 'string' ? err : String(err.message ?? err.type ?? '');
      return text ? `${msg}: ${text}` : msg;
    },
  });
}

/**
 * One structured logger for every process. Child loggers carry `jobId` / `requestId` so a request can
 * be followed from the API through the queue into the worker.
 */
export function createLogger(
  options: { name: string; level?: string; format?: LogFormat } & LoggerOptions,
): Logger {
  const { format, ...rest } = options;
  const opts: LoggerOptions = {
    level: options.level ?? process.env.LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info'),
    base: { service: options.name, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...rest,
  };
  if (resolveLogFormat(format ?? process.env.LOG_FORMAT) === 'json') return pino(opts);
  return pino(opts, prettyStream(process.stdout.isTTY === true));
}
