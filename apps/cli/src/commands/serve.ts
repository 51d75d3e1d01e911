import { type Config, loadConfig } from '@embedpool/core/config';
import { EmbedpoolError } from '@embedpool/core/errors';
import { createLogger, type Logger } from '@embedpool/core/logger';
import { defaultCacheDir } from '@embedpool/core/model-fetch';
import { startTelemetry } from '@embedpool/core/telemetry';
import type { Command } from 'commander';
import { Registry } from 'prom-client';
import { ensureRedis } from './local-redis';
import { addServeOptions, applyServeFlags, type ServeFlags } from './serve-options';
import { planDefaults } from './worker-plan';

type Stopper = () => Promise<void>;

function bootConfig(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    console.error(`embedpool: ${err instanceof EmbedpoolError ? err.message : String(err)}`);
    process.exit(1);
  }
}

/** SIGTERM/SIGINT: stop taking work, finish what is in flight, then exit 0 (1 if the drain overruns). */
function onShutdown(logger: Logger, timeoutMs: number, stoppers: Stopper[]): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: draining in-flight work');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs }, 'drain took too long; exiting');
      process.exit(1);
    }, timeoutMs);
    timer.unref();
    (async () => {
      for (const s of stoppers) await s();
      logger.info('stopped');
      process.exit(0);
    })().catch((err: unknown) => {
      logger.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function run(kind: 'serve' | 'api' | 'worker'): Promise<void> {
  let config = bootConfig();
  const logger = createLogger({ name: kind, level: config.LOG_LEVEL });
  // Before any queue or worker exists: they take BullMQ's telemetry when they are built.
  const telemetry = startTelemetry({ serviceName: `embedpool-${kind}` });
  if (telemetry) logger.info('tracing: exporting spans over OTLP/HTTP');
  try {
    let plan: Awaited<ReturnType<typeof planDefaults>>['detected'] | undefined;
    if (kind !== 'api' && config.WORKER_PLAN === 'auto') {
      const planned = await planDefaults(process.env, logger);
      config = bootConfig(planned.env);
      plan = planned.detected;
    }
    // Handlers first: a SIGTERM during start-up must still drain what has started (work can arrive at once).
    const stoppers: Stopper[] = [];
    onShutdown(logger, config.SHUTDOWN_TIMEOUT_MS, stoppers);
    // Last of all: the spans of the drain itself are sent too.
    if (telemetry) stoppers.push(() => telemetry.shutdown().catch(() => {}));
    const registry = new Registry();
    if (kind === 'serve') {
      // A cluster or an Entra-authenticated Redis is never a local one this process could start.
      if (!config.REDIS_CLUSTER && config.REDIS_AUTH === 'key') {
        const dataDir = config.EMBEDPOOL_CACHE_DIR ?? defaultCacheDir();
        const redis = await ensureRedis(config.REDIS_URL, config.REDIS_AUTOSTART, logger, dataDir);
        // Last to stop: the API and worker need Redis while they drain.
        stoppers.unshift(redis.stop);
      }
    }
    // Loaded here, not at the top: the other CLI commands should not pay for express, BullMQ and the worker.
    const { resolveAuth, startApi } = await import('@embedpool/api');
    // Refuse an unsafe API (non-loopback HOST without auth) before loading a model or starting anything.
    if (kind !== 'worker') resolveAuth(config);
    if (kind !== 'api') {
      // Only here: the API alone never loads the worker (onnxruntime, sharp), so its image need not ship them.
      const { startDeliveryWorker, startMetricsServer, startWorker } = await import('@embedpool/worker');
      const worker = await startWorker({ config, logger, registry, ...(plan ? { plan } : {}) });
      stoppers.unshift(worker.close);
      const delivery = await startDeliveryWorker({ config, logger, registry });
      stoppers.unshift(delivery.close);
      if (kind === 'worker' && config.WORKER_METRICS_PORT > 0) {
        const metrics = await startMetricsServer(
          registry,
          config.WORKER_METRICS_HOST,
          config.WORKER_METRICS_PORT,
        );
        stoppers.push(metrics.close);
        logger.info({ url: `${metrics.url}/metrics` }, 'worker metrics');
      }
    }
    if (kind !== 'worker') {
      const api = await startApi({ config, logger, registry });
      // The API stops first so no new work arrives while the worker drains.
      stoppers.unshift(api.close);
      logger.info({ url: api.url }, `embedpool ${kind === 'serve' ? 'API + worker' : 'API'} listening`);
    }
  } catch (err) {
    // A refusal we anticipated (configuration, model, address) is one sentence for a person, no stack;
    // anything else is a bug or an outage, logged in full.
    if (err instanceof EmbedpoolError) {
      console.error(`embedpool ${kind}: ${err.message}`);
    } else {
      logger.fatal({ err }, `cannot start: ${err instanceof Error ? err.message : String(err)}`);
    }
    process.exit(1);
  }
}

export function registerServeCommands(program: Command): void {
  const commands = [
    [
      'serve',
      'API and worker in one process (the default `npm start`); starts a private Redis if none answers',
    ],
    ['api', 'the HTTP API alone (scale it apart from the workers)'],
    ['worker', 'a queue worker alone, with /metrics on WORKER_METRICS_PORT'],
  ] as const;
  for (const [kind, description] of commands) {
    addServeOptions(program.command(kind).description(description), kind).action((flags: ServeFlags) => {
      // The flags become the variables they stand for, so everything downstream reads one config.
      applyServeFlags(kind, flags, process.env);
      return run(kind);
    });
  }
}
