import type { Config } from '@embedpool/core/config';
import { type LiveWorker, liveWorkers } from '@embedpool/core/queue';
import { Router } from 'express';
import type { Redis } from 'ioredis';

export interface ModelsRouteDeps {
  config: Config;
  redis: Redis;
}

/** One entry of GET /v1/models: OpenAI's model object plus what an image-embedding client needs. */
export interface ModelEntry {
  id: string;
  object: 'model';
  /** Unix seconds: when the longest-running worker serving it started. */
  created: number;
  owned_by: string;
  /** Floats per vector. */
  dimension: number;
  /** Numeric precision of the weights the workers run: fp32, fp16 (or int8 for a quantized model). */
  precision: string;
  /** True when the weights are a random stand-in: vectors from it mean nothing. */
  random_weights: boolean;
  /** Live workers serving it. */
  workers: number;
}

/** Heartbeats say float32/float16/int8 (as the metrics do); model lists use the hub's short names. */
const SHORT_PRECISION: Record<string, string> = { float32: 'fp32', float16: 'fp16', int8: 'int8' };

/** The models live workers serve, grouped by model id, from the registry their heartbeats keep. */
export function listModels(workers: readonly LiveWorker[]): ModelEntry[] {
  const byId = new Map<string, ModelEntry>();
  for (const w of workers) {
    const seen = byId.get(w.modelId);
    const precision = SHORT_PRECISION[w.precision] ?? 'fp32';
    if (!seen) {
      byId.set(w.modelId, {
        id: w.modelId,
        object: 'model',
        created: Math.floor(w.startedAt / 1000),
        owned_by: w.modelId.includes('/') ? w.modelId.split('/')[0]! : 'embedpool',
        dimension: w.dim,
        precision,
        random_weights: w.randomWeights,
        workers: 1,
      });
      continue;
    }
    seen.workers += 1;
    seen.created = Math.min(seen.created, Math.floor(w.startedAt / 1000));
    // One random-weight worker is enough to make answers for this id meaningless some of the time.
    seen.random_weights ||= w.randomWeights;
    if (!seen.precision.split(',').includes(precision)) seen.precision = `${seen.precision},${precision}`;
  }
  return [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
}

/**
 * GET /v1/models: OpenAI's list-models contract, so OpenAI clients (and tools that pick a model from this
 * list) see what the deployment serves. Read from the live worker registry: an empty list while no worker
 * has a model loaded.
 */
export function modelsRouter({ config, redis }: ModelsRouteDeps): Router {
  const router = Router();
  router.get('/v1/models', async (_req, res) => {
    const workers = await liveWorkers(redis, config.QUEUE_PREFIX, config.READY_WORKER_TTL_S);
    res.set('Cache-Control', 'no-store').json({ object: 'list', data: listModels(workers) });
  });
  return router;
}
