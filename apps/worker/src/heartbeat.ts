import type { Config } from '@embedpool/core/config';
import type { Engine } from '@embedpool/core/engine';
import type { Logger } from '@embedpool/core/logger';
import type { ModelPrecision } from '@embedpool/core/precision';
import { heartbeat, removeWorker, type WorkerInfo } from '@embedpool/core/queue';
import type { Redis } from 'ioredis';
import type { ModelSource } from './model-source';

/**
 * What /v1/models reports: the source's own word (a fetched variant), else float16 inputs or an fp16 file
 * name (exports usually keep float32 I/O around fp16 weights), else fp32.
 */
export function modelPrecision(model: ModelSource, inputType: string): string {
  if (model.precision) return model.precision;
  if (inputType === 'float16' || /(^|[_.-])fp16([_.-]|$)/i.test(model.path.split('/').pop() ?? ''))
    return 'fp16';
  return 'fp32';
}

/** The heartbeat's precision: the graph's own word (int8 metadata, float16 inputs), else the source's. */
export function heartbeatPrecision(
  read: ModelPrecision | 'unknown',
  model: ModelSource,
  inputType: string,
): ModelPrecision {
  if (read !== 'unknown') return read;
  return modelPrecision(model, inputType) === 'fp16' ? 'float16' : 'float32';
}

export interface Heartbeat {
  /** When the first heartbeat was sent (epoch ms). */
  firstAt: number;
  /** Stops beating. */
  stop(): void;
  /** Takes this worker out of the registry (once it has stopped taking work). */
  leave(): Promise<void>;
}

/**
 * Sends this worker's heartbeat now, then every READY_WORKER_TTL_S / 3, with its measured throughput:
 * an EWMA over heartbeat intervals in which the model had work (what the autoscaler divides by).
 */
export async function startHeartbeat(opts: {
  redis: Redis;
  config: Config;
  engine: Engine;
  info: WorkerInfo;
  logger: Logger;
}): Promise<Heartbeat> {
  const { redis, config, engine, info, logger } = opts;
  let beating = false;
  let rate = 0;
  let mark = { at: performance.now(), images: engine.stats.images, busyMs: engine.stats.busyMs };
  const measure = () => {
    const now = { at: performance.now(), images: engine.stats.images, busyMs: engine.stats.busyMs };
    const images = now.images - mark.images;
    const busyShare = (now.busyMs - mark.busyMs) / Math.max(1, now.at - mark.at);
    // Only intervals where the model was busy most of the time say what this worker can do.
    if (images > 0 && busyShare > 0.5) {
      const sample = images / ((now.at - mark.at) / 1000);
      rate = rate === 0 ? sample : 0.7 * rate + 0.3 * sample;
    }
    mark = now;
  };
  const beat = async () => {
    if (beating) return;
    beating = true;
    try {
      measure();
      await heartbeat(redis, config.QUEUE_PREFIX, {
        ...info,
        dim: engine.dim ?? info.dim,
        imagesPerSecond: rate,
      });
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'heartbeat failed');
    } finally {
      beating = false;
    }
  };
  await beat();
  const firstAt = Date.now();
  const timer = setInterval(beat, Math.max(500, (config.READY_WORKER_TTL_S * 1000) / 3));
  timer.unref();
  return {
    firstAt,
    stop: () => clearInterval(timer),
    leave: () => removeWorker(redis, config.QUEUE_PREFIX, info.id).catch(() => {}),
  };
}
