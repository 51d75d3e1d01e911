/**
 * The worker process: its composition root and entry point. The worker images run it compiled
 * (dist/worker.mjs), a checkout with `embedpool worker` or `node --import tsx apps/worker/src/main.ts`.
 * Configuration is read once; the machine plan sizes the worker; the queue worker, the delivery worker and
 * the metrics listener start in that order and stop in the order ctx.shutdown keeps (consumers drain first,
 * the listener goes last so the drain is scraped).
 */
import {
  bootConfig,
  isProcessEntry,
  type ProcessContext,
  refuseArguments,
  runProcess,
} from '@embedpool/core/process';
import type { DetectedSku } from '@embedpool/core/sku';
import { startDeliveryWorker } from './delivery-worker';
import { createWorkerDeps } from './deps';
import { startMetricsServer } from './metrics-server';
import { planDefaults } from './plan';
import { startWorker } from './worker';

/**
 * WORKER_PLAN=auto: the machine's plan fills the sizing variables the environment leaves unset, and the
 * config is read again with them. Returns the context to run with and what was detected (for the worker's
 * plan metric); the context unchanged otherwise.
 */
export async function planWorker(ctx: ProcessContext): Promise<{ ctx: ProcessContext; plan?: DetectedSku }> {
  if (ctx.config.WORKER_PLAN !== 'auto') return { ctx };
  const planned = await planDefaults(ctx.env, ctx.logger);
  return { ctx: { ...ctx, env: planned.env, config: bootConfig(planned.env) }, plan: planned.detected };
}

export interface WorkerPartsOptions {
  plan?: DetectedSku;
  /** Serve /metrics and /healthz on WORKER_METRICS_PORT (the worker alone; `serve` has the API's). */
  metricsServer: boolean;
}

/**
 * The worker process's composition: what its consumers share (Redis client, job store, blob client, URL
 * policies, the delivery queue: deps.ts) is built once here and handed to the queue worker and the delivery
 * worker (and through the queue worker to the ingest workers). Each adds its stop; the shared parts close
 * after every consumer has drained.
 */
export async function startWorkerParts(ctx: ProcessContext, opts: WorkerPartsOptions): Promise<void> {
  const { config, logger, registry } = ctx;
  const deps = await createWorkerDeps(config, { logger });
  ctx.shutdown.first(deps.close);
  const worker = await startWorker({
    config,
    logger,
    registry,
    deps,
    ...(opts.plan ? { plan: opts.plan } : {}),
  });
  ctx.shutdown.first(worker.close);
  const delivery = await startDeliveryWorker({ config, logger, registry, deps });
  ctx.shutdown.first(delivery.close);
  if (opts.metricsServer && config.WORKER_METRICS_PORT > 0) {
    const metrics = await startMetricsServer(
      registry,
      config.WORKER_METRICS_HOST,
      config.WORKER_METRICS_PORT,
    );
    ctx.shutdown.last(metrics.close);
    logger.info({ url: `${metrics.url}/metrics` }, 'worker metrics');
  }
}

/** The worker process: plan, consumers, signals; resolves once it is running (it exits on SIGTERM/SIGINT). */
export function main(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  // onnxruntime's telemetry would try HTTPS uploads; set before any session is created.
  process.env.ORT_DISABLE_TELEMETRY ??= '1';
  return runProcess('worker', env, async (boot) => {
    const { ctx, plan } = await planWorker(boot);
    await startWorkerParts(ctx, { metricsServer: true, ...(plan ? { plan } : {}) });
  });
}

if (isProcessEntry(import.meta.url)) {
  refuseArguments('worker', process.argv.slice(2));
  await main();
}
