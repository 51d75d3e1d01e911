import type { Config } from '@embedpool/core/config';
import { type Generation, liveWorkers, type WorkerInfo } from '@embedpool/core/queue';
import { type Response, Router } from 'express';
import type { Redis } from 'ioredis';
import { RETRY_AFTER_S } from '../http-errors';

export interface HealthRouteDeps {
  config: Config;
  redis: Redis;
  /** Whether job completions can reach this process (see ScoreWaiter). */
  events: { readonly listening: boolean };
  /** The Redis data marker: a loss is reported in /readyz (the service still works for new requests). */
  generation?: { readonly current: Generation | undefined };
}

// Bounds the readiness probe itself: a probe that hangs is as bad as no probe.
const PROBE_TIMEOUT_MS = 2_000;

type WorkerSummary = Pick<
  WorkerInfo,
  'id' | 'host' | 'model' | 'modelId' | 'dim' | 'provider' | 'randomWeights' | 'precision'
>;

/** /healthz: the process answers. /readyz: a /score request sent now can be answered. */
export function healthRouter({ config, redis, events, generation }: HealthRouteDeps): Router {
  const router = Router();

  router.get('/healthz', (_req, res) => {
    res.set('Cache-Control', 'no-store').json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    res.set('Cache-Control', 'no-store');
    try {
      await withTimeout(redis.ping(), PROBE_TIMEOUT_MS);
    } catch (err) {
      notReady(res, `redis unreachable: ${(err as Error).message}`);
      return;
    }
    let workers: WorkerSummary[];
    try {
      const live = await withTimeout(
        liveWorkers(redis, config.QUEUE_PREFIX, config.READY_WORKER_TTL_S),
        PROBE_TIMEOUT_MS,
      );
      workers = live.map(({ id, host, model, modelId, dim, provider, randomWeights, precision }) => ({
        id,
        host,
        model,
        modelId,
        dim,
        provider,
        randomWeights,
        precision,
      }));
    } catch (err) {
      notReady(res, `could not read the worker registry from redis: ${(err as Error).message}`);
      return;
    }
    if (!events.listening) {
      notReady(res, 'redis unreachable: not listening for job events yet', workers);
      return;
    }
    if (workers.length === 0) {
      notReady(
        res,
        `no live worker: none sent a heartbeat in the last ${config.READY_WORKER_TTL_S} s`,
        workers,
      );
      return;
    }
    const lost = dataLoss(generation?.current, config.JOB_TTL_S);
    const warning = [warningsFor(workers), lost?.message].filter(Boolean).join(' | ') || undefined;
    res.json({ status: 'ok', workers, ...(lost ? { dataLoss: lost } : {}), ...(warning ? { warning } : {}) });
  });
  return router;
}

function notReady(res: Response, reason: string, workers?: WorkerSummary[]): void {
  res
    .status(503)
    .set('Retry-After', String(RETRY_AFTER_S))
    .json({ status: 'unavailable', reason, ...(workers ? { workers } : {}) });
}

/** A loss of Redis data within JOB_TTL_S: records from before it would still exist, and are gone. */
function dataLoss(g: Generation | undefined, ttlS: number) {
  if (g?.lostAt === undefined || Date.now() - g.lostAt >= ttlS * 1000) return undefined;
  const at = new Date(g.lostAt).toISOString();
  return {
    lostAt: at,
    message:
      `REDIS LOST ITS DATA at ${at}: jobs and ingestions recorded before then are gone (their ids answer ` +
      '410 STATE_LOST); `embedpool recover` lists the outputs they left in storage',
  };
}

function warningsFor(workers: WorkerSummary[]): string | undefined {
  const out: string[] = [];
  const random = workers.filter((w) => w.randomWeights);
  if (random.length > 0) {
    out.push(
      `RANDOM WEIGHTS: worker(s) ${random.map((w) => w.id).join(', ')} run a model with random weights; ` +
        'the pipeline works but the vectors MEAN NOTHING. Load the real model before using any output.',
    );
  }
  const models = new Set(workers.map((w) => `${w.modelId} (dim ${w.dim})`));
  if (models.size > 1) {
    out.push(`workers disagree on the model: ${[...models].join(' vs ')}; vectors are not comparable`);
  }
  return out.length > 0 ? out.join(' | ') : undefined;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, expired]).finally(() => clearTimeout(timer));
}
