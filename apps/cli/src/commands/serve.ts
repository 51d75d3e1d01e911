import type { ProcessContext } from '@embedpool/core/process';
import type { Command } from 'commander';
import { addServeOptions, applyServeFlags, type ServeFlags } from './serve-options';

// The apps, the process runner (OpenTelemetry, prom-client) and the local Redis are loaded on use, not at
// the top: every other CLI command would pay for them at start (about 0.7 s on a 2-core VM), and `api`
// never loads the worker (onnxruntime, sharp).
const apiMain = () => import('@embedpool/api/main');
const workerMain = () => import('@embedpool/worker/main');

/**
 * `serve`: the API and a worker in one process, the default `npm start`. The apps' parts in one lifecycle,
 * plus a private Redis when none answers (a local convenience the services themselves never do).
 */
async function serve(env: NodeJS.ProcessEnv): Promise<void> {
  const [api, worker, { runProcess }] = await Promise.all([
    apiMain(),
    workerMain(),
    import('@embedpool/core/process'),
  ]);
  process.env.ORT_DISABLE_TELEMETRY ??= '1';
  await runProcess('serve', env, async (boot) => {
    const { ctx, plan } = await worker.planWorker(boot);
    await startLocalRedis(ctx);
    // Before a model loads: an unsafe API (non-loopback HOST without auth) is refused at once.
    api.checkApiConfig(ctx);
    await worker.startWorkerParts(ctx, { metricsServer: false, ...(plan ? { plan } : {}) });
    await api.startApiPart(ctx, 'API + worker');
  });
}

/** A cluster or an Entra-authenticated Redis is never a local one this process could start. */
async function startLocalRedis(ctx: ProcessContext): Promise<void> {
  const { config, logger } = ctx;
  if (config.REDIS_CLUSTER || config.REDIS_AUTH !== 'key') return;
  const [{ defaultCacheDir }, { ensureRedis }] = await Promise.all([
    import('@embedpool/core/model-fetch'),
    import('./local-redis'),
  ]);
  const dataDir = config.EMBEDPOOL_CACHE_DIR ?? defaultCacheDir();
  const redis = await ensureRedis(config.REDIS_URL, config.REDIS_AUTOSTART, logger, dataDir);
  // Added first, so it stops last: the API and the worker need Redis while they drain.
  ctx.shutdown.first(redis.stop);
}

const RUN = {
  serve,
  api: async (env: NodeJS.ProcessEnv) => (await apiMain()).main(env),
  worker: async (env: NodeJS.ProcessEnv) => (await workerMain()).main(env),
};

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
      return RUN[kind](process.env);
    });
  }
}
