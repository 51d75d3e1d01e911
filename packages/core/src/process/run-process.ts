import { Registry } from 'prom-client';
import { type Config, loadConfig } from '../config';
import { EmbedpoolError } from '../errors';
import { createLogger, type Logger } from '../logger';
import { startTelemetry } from '../telemetry';
import { ShutdownOrder, stopOnSignals } from './shutdown';

/** What a process's start hands its parts: one config, one logger, one metrics registry, one stop order. */
export interface ProcessContext {
  config: Config;
  env: NodeJS.ProcessEnv;
  logger: Logger;
  registry: Registry;
  shutdown: ShutdownOrder;
}

/**
 * The config a process boots with, or one sentence naming the variable at fault on stderr and exit 1: a
 * refusal of the operator's settings is for a person, not a stack trace.
 */
export function bootConfig(env: NodeJS.ProcessEnv): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    console.error(`embedpool: ${err instanceof EmbedpoolError ? err.message : String(err)}`);
    process.exit(1);
  }
}

/**
 * The lifecycle every embedpool process shares (`api`, `worker`, the all-in-one `serve`): config, logger
 * and tracing first, then the signal handlers, then `start`, which builds the process's parts and adds each
 * one's stop to `ctx.shutdown`. A refusal at start-up (an EmbedpoolError: configuration, model, address) is
 * one line and exit 1; anything else is logged in full.
 */
export async function runProcess(
  kind: 'serve' | 'api' | 'worker',
  env: NodeJS.ProcessEnv,
  start: (ctx: ProcessContext) => Promise<void>,
): Promise<void> {
  const config = bootConfig(env);
  const logger = createLogger({ name: kind, level: config.LOG_LEVEL });
  // Before any queue or worker exists: they take BullMQ's telemetry when they are built.
  const telemetry = startTelemetry({ serviceName: `embedpool-${kind}` });
  if (telemetry) logger.info('tracing: exporting spans over OTLP/HTTP');
  try {
    const shutdown = new ShutdownOrder();
    stopOnSignals(logger, config.SHUTDOWN_TIMEOUT_MS, shutdown);
    if (telemetry) shutdown.last(() => telemetry.shutdown().catch(() => {}));
    await start({ config, env, logger, registry: new Registry(), shutdown });
  } catch (err) {
    if (err instanceof EmbedpoolError) {
      console.error(`embedpool ${kind}: ${err.message}`);
    } else {
      logger.fatal({ err }, `cannot start: ${err instanceof Error ? err.message : String(err)}`);
    }
    process.exit(1);
  }
}
