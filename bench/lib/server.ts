import { monitorEventLoopDelay } from 'node:perf_hooks';
import { type RunningApi, startApi } from '@embedpool/api';
import { type Config, loadConfig } from '@embedpool/core/config';
import { DINOV2_PREPROCESSOR_CONFIG } from '@embedpool/core/preprocess';
import { startWorker, type WorkerHandle } from '@embedpool/worker';
import { Registry } from 'prom-client';
import { round } from './stats';

/**
 * The service under test, in a process of its own: API and worker together (the all-in-one layout of
 * `embedpool serve`), so RSS and event-loop delay are the service's and not the load generator's.
 */
export interface ServerStartInput {
  modelPath: string;
  modelId: string;
  randomWeights: boolean;
  redisUrl: string;
  prefix: string;
  /** Worker and runtime settings, as environment variables (MAX_BATCH_SIZE, INTRA_OP_THREADS, ...). */
  env: Record<string, string>;
}

export interface ServerStarted {
  url: string;
  pid: number;
  loadSeconds: number;
  provider: string;
  fallbackReason: string | null;
  inferenceThreads: number;
  dim: number | null;
  /** The settings the worker actually runs with. */
  settings: Record<string, string | number>;
  rssAfterStartBytes: number;
}

export interface BatchRecord {
  size: number;
  inferMs: number;
  waitMs: number;
}

export interface ServerPhaseStats {
  seconds: number;
  /**
   * Event-loop lag: how late a 10 ms repeating timer fired (monitorEventLoopDelay's samples minus the 10 ms
   * interval they include), in ms. 0 = on time.
   */
  eventLoopDelayMs: { p50: number; p99: number; max: number; mean: number };
  /** Sampled every 100 ms: the whole process (API + worker + inference threads). */
  rssPeakBytes: number;
  rssEndBytes: number;
  heapUsedEndBytes: number;
  externalEndBytes: number;
  engine: { runs: number; images: number; busyMs: number; busyRatio: number; meanBatch: number };
  /** Images per model run, count of runs at each size. */
  batchSizes: Record<string, number>;
  batches: BatchRecord[];
  /** Mean per event of each pipeline stage (embedpool_stage_seconds), in ms, with its event count. */
  stages: Record<string, { meanMs: number; count: number }>;
  /** CPU this process used, in cores (user + system over wall). */
  processCores: number;
}

const ELD_RESOLUTION_MS = 10;

export const WORKER_SETTINGS = [
  'EXECUTION_PROVIDER',
  'CUDA_DEVICE_ID',
  'INTRA_OP_THREADS',
  'INTER_OP_THREADS',
  'GRAPH_OPTIMIZATION',
  'INFERENCE_THREADS',
  'MAX_BATCH_SIZE',
  'BATCH_WAIT_MS',
  'WORKER_CONCURRENCY',
  'DECODE_CONCURRENCY',
  'MAX_IMAGES_PER_REQUEST',
  'REQUEST_TIMEOUT_MS',
  'JOB_ATTEMPTS',
  'MAX_JOB_IMAGES',
] as const;

interface StageTotals {
  [stage: string]: { sum: number; count: number };
}

async function stageTotals(registry: Registry): Promise<StageTotals> {
  const metric = registry.getSingleMetric('embedpool_stage_seconds');
  const out: StageTotals = {};
  if (!metric) return out;
  const { values } = await metric.get();
  for (const v of values) {
    const stage = String(v.labels['stage'] ?? '');
    const name = (v as { metricName?: string }).metricName ?? '';
    const t = out[stage] ?? { sum: 0, count: 0 };
    out[stage] = t;
    if (name.endsWith('_sum')) t.sum += v.value;
    else if (name.endsWith('_count')) t.count += v.value;
  }
  return out;
}

export function createServerHandlers() {
  let worker: WorkerHandle | undefined;
  let api: RunningApi | undefined;
  let registry: Registry | undefined;
  let phase:
    | {
        at: number;
        eld: ReturnType<typeof monitorEventLoopDelay>;
        sampler: NodeJS.Timeout;
        rssPeak: number;
        engine: { runs: number; images: number; busyMs: number };
        batches: BatchRecord[];
        stages: StageTotals;
        cpu: NodeJS.CpuUsage;
      }
    | undefined;

  const onBatch = (e: BatchRecord) =>
    phase?.batches.push({ size: e.size, inferMs: round(e.inferMs, 2), waitMs: round(e.waitMs, 2) });

  return {
    async start(input: ServerStartInput): Promise<ServerStarted> {
      const t0 = performance.now();
      const config: Config = loadConfig({
        ...input.env,
        NODE_ENV: 'development',
        LOG_LEVEL: 'error',
        HOST: '127.0.0.1',
        PORT: '0',
        REDIS_URL: input.redisUrl,
        QUEUE_PREFIX: input.prefix,
        MODEL_FETCH: 'false',
      });
      registry = new Registry();
      worker = await startWorker({
        config,
        registry,
        model: {
          path: input.modelPath,
          modelId: input.modelId,
          randomWeights: input.randomWeights,
          preprocessor: DINOV2_PREPROCESSOR_CONFIG,
        },
      });
      worker.batcher.on('batch', onBatch);
      api = await startApi({ config, registry });
      const settings: Record<string, string | number> = {};
      for (const k of WORKER_SETTINGS) settings[k] = config[k];
      settings['UV_THREADPOOL_SIZE'] = process.env.UV_THREADPOOL_SIZE ?? '4 (libuv default)';
      return {
        url: api.url,
        pid: process.pid,
        loadSeconds: round((performance.now() - t0) / 1000, 2),
        provider: worker.engine.provider,
        fallbackReason: worker.engine.fallbackReason ?? null,
        inferenceThreads: worker.engine.threads,
        dim: worker.engine.dim,
        settings,
        rssAfterStartBytes: process.memoryUsage().rss,
      };
    },

    async begin(): Promise<null> {
      if (!worker || !registry) throw new Error('server not started');
      if (phase) {
        clearInterval(phase.sampler);
        phase.eld.disable();
      }
      const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
      eld.enable();
      const p = {
        at: performance.now(),
        eld,
        sampler: setInterval(() => {
          p.rssPeak = Math.max(p.rssPeak, process.memoryUsage.rss());
        }, 100),
        rssPeak: process.memoryUsage.rss(),
        engine: { ...worker.engine.stats },
        batches: [] as BatchRecord[],
        stages: await stageTotals(registry),
        cpu: process.cpuUsage(),
      };
      phase = p;
      return null;
    },

    async end(): Promise<ServerPhaseStats> {
      if (!worker || !registry || !phase) throw new Error('no phase running');
      const p = phase;
      phase = undefined;
      clearInterval(p.sampler);
      p.eld.disable();
      const seconds = (performance.now() - p.at) / 1000;
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage(p.cpu);
      const stats = worker.engine.stats;
      const runs = stats.runs - p.engine.runs;
      const images = stats.images - p.engine.images;
      const busyMs = stats.busyMs - p.engine.busyMs;
      const after = await stageTotals(registry);
      const stages: ServerPhaseStats['stages'] = {};
      for (const [stage, t] of Object.entries(after)) {
        const b = p.stages[stage] ?? { sum: 0, count: 0 };
        const count = t.count - b.count;
        if (count > 0) stages[stage] = { meanMs: round(((t.sum - b.sum) * 1000) / count, 2), count };
      }
      const batchSizes: Record<string, number> = {};
      for (const b of p.batches) batchSizes[b.size] = (batchSizes[b.size] ?? 0) + 1;
      // The histogram records the time between timer runs, interval included: the lag is what exceeds it.
      const ms = (ns: number) => round(Math.max(0, ns / 1e6 - ELD_RESOLUTION_MS), 2);
      return {
        seconds: round(seconds, 2),
        eventLoopDelayMs: {
          p50: ms(p.eld.percentile(50)),
          p99: ms(p.eld.percentile(99)),
          max: ms(p.eld.max),
          mean: ms(p.eld.mean),
        },
        rssPeakBytes: Math.max(p.rssPeak, mem.rss),
        rssEndBytes: mem.rss,
        heapUsedEndBytes: mem.heapUsed,
        externalEndBytes: mem.external,
        engine: {
          runs,
          images,
          busyMs: round(busyMs, 1),
          busyRatio: round(busyMs / Math.max(1, seconds * 1000 * worker.engine.threads), 3),
          meanBatch: round(images / Math.max(1, runs), 2),
        },
        batchSizes,
        batches: p.batches,
        stages,
        processCores: round((cpu.user + cpu.system) / 1e6 / seconds, 2),
      };
    },

    async stop(): Promise<null> {
      await api?.close();
      await worker?.close();
      api = undefined;
      worker = undefined;
      return null;
    },
  };
}
