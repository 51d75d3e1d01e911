/**
 * The API process: its composition root and entry point. The API image runs it compiled (dist/api.mjs,
 * which holds no worker code: no onnxruntime, no sharp), a checkout with `embedpool api` or
 * `node --import tsx apps/api/src/main.ts`. Configuration is read once, an unsafe listener is refused
 * before anything starts, and SIGTERM stops the listener first so no new work arrives while requests drain.
 */
import { isProcessEntry, type ProcessContext, refuseArguments, runProcess } from '@embedpool/core/process';
import { resolveAuth } from './auth';
import { startApi } from './server';

/** Refuses an unsafe API (a non-loopback HOST without auth): call before loading a model or starting anything. */
export function checkApiConfig(ctx: ProcessContext): void {
  resolveAuth(ctx.config);
}

/** Starts the HTTP API and puts its stop ahead of everything started before it. */
export async function startApiPart(ctx: ProcessContext, label = 'API'): Promise<void> {
  const { config, logger, registry } = ctx;
  const api = await startApi({ config, logger, registry });
  ctx.shutdown.first(api.close);
  logger.info({ url: api.url }, `embedpool ${label} listening`);
}

/** The API process; resolves once it listens (it exits on SIGTERM/SIGINT). */
export function main(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  return runProcess('api', env, async (ctx) => {
    checkApiConfig(ctx);
    await startApiPart(ctx);
  });
}

if (isProcessEntry(import.meta.url)) {
  refuseArguments('api', process.argv.slice(2));
  await main();
}
