/**
 * The pipeline's own cost per image, with the model taken out of the picture: a near-zero-cost DINOv2
 * (hidden 8, one layer, 224 px, built with the project's builder) stands in for a GPU, so whatever the API,
 * the worker and Redis spend per image is all there is. The API and the worker run as the images run them
 * (dist/api.mjs and dist/worker.mjs, built for the run), as separate processes on a private redis-server
 * (and a private Azurite for blob outputs and ingestion); the
 * load comes from this process. Per phase: img/s, CPU ms per image of each process (/proc/<pid>/stat) and
 * of Redis (INFO cpu: used_cpu_sys + used_cpu_user), Redis commands per image (INFO commandstats, script
 * bodies included), and the total as a ratio to decoding the same image alone (sharp decode + resize +
 * normalize, measured in this run, in a child process of its own).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BlobServiceClient } from '@azure/storage-blob';
import { writeDinov2Onnx } from '@embedpool/core/model';
import { DINOV2_PREPROCESSOR_CONFIG } from '@embedpool/core/preprocess';
import { SERVICE_NODE_FLAGS } from '@embedpool/core/process';
import { PARITY_DIR, REPO_ROOT } from '@embedpool/testkit';
import { type Azurite, startAzurite } from '@embedpool/testkit/azurite-kit';
import { ChildHandle } from './children';
import { cpuShare, cpuSnapshot, processTicks, TICK_MS, threadTicks } from './cpu';
import type { DecodeAlone, DecodeAloneInput } from './decode-alone';
import { progress } from './log';
import { freePort, startBenchRedis } from './redis';
import { median, round, sleep } from './stats';

/** The stand-in for a GPU: costs next to nothing to run, so the pipeline's own work is what is measured. */
export const TINY_DINOV2 = {
  hidden_size: 8,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  mlp_ratio: 4,
  image_size: 224,
  patch_size: 14,
} as const;

export interface PipelineInput {
  /** Seconds per load phase. */
  seconds: number;
  /** Blobs the ingestion phase embeds. */
  ingestBlobs: number;
  /** Extra environment for the api and worker processes (A/B of settings). */
  env?: Record<string, string>;
}

export interface PipelinePhase {
  name: string;
  /** What one request carries, and how many clients send them. */
  clients: number;
  imagesPerRequest: number;
  images: number;
  errors: number;
  firstError: string | null;
  wallSeconds: number;
  imagesPerSec: number;
  /**
   * CPU milliseconds per image, with each process's idle background (heartbeats, blocking reads, Redis's
   * cron; measured before the phases) taken out: what the work itself costs, which is what bounds a fleet.
   */
  cpuMsPerImage: { api: number; worker: number; redis: number; total: number; azurite: number };
  /** The same with the background left in. */
  grossCpuMsPerImage: { api: number; worker: number; redis: number; total: number };
  /**
   * The worker's gross CPU per image by thread (`threadTicks`: `main`, `libvips worker`, and on Node 20 every
   * other thread as `node`): where the worker's time goes beyond decode. Idle background not taken out.
   */
  workerThreadMsPerImage: Record<string, number>;
  /** Decode alone (CPU ms per image) around this phase: the mean of the measurements just before and after it. */
  decodeMsPerImage: number;
  /** total / decodeMsPerImage: for information (see `ratioToDecode`). */
  ratioToAdjacentDecode: number;
  /**
   * total / the run's fastest decode alone (`decode.cpuMsPerImage`): what the verdicts use. Decode alone read
   * 5.8-6.9 ms before the first phase but 8.4-12.3 ms between phases in the same child process with the
   * machine quiet, while measured on its own (no api, worker or load around, or right after a load) it stayed
   * at 5.4-8.2 ms. Unexplained, so the verdicts take the fastest, which can only make a ratio larger.
   */
  ratioToDecode: number;
  redisCommandsPerImage: number;
  redisCommandsByName: Record<string, number>;
  /**
   * Redis's own time per image by command (INFO commandstats usec, microseconds; a script's EVALSHA includes
   * the commands it runs, which are also counted under their own names): where Redis's CPU goes.
   */
  redisUsecByName: Record<string, number>;
  /** What the one Redis core would carry at this cost: 1000 / redis ms per image. */
  redisBoundImagesPerSec: number | null;
  /** Median request latency, ms (null for the ingestion). */
  latencyP50Ms: number | null;
  loadAverage: number[];
}

export interface PipelineReport {
  model: { config: typeof TINY_DINOV2; bytes: number };
  image: { name: string; bytes: number; width: number; height: number };
  /**
   * sharp decode + resize + normalize of the same image alone, sequential, in a child process of its own, with
   * the machine quiet: the fastest of the measurements taken before the first phase and after each
   * (`samplesMs`, in order, one more than the phases).
   */
  decode: { cpuMsPerImage: number; wallMsPerImage: number; reps: number; samplesMs: number[] };
  settings: Record<string, string>;
  /** The node flags the api and worker ran with (`pipelineNodeArgs`); absent in runs before they were recorded. */
  nodeArgs?: string[];
  /** CPU ms per second each process spends with no traffic. */
  idleCpuMsPerSecond: { api: number; worker: number; redis: number };
  phases: PipelinePhase[];
  targets: PipelineTarget[];
  loadAverageAtStart: number[];
  notes: string[];
}

export interface PipelineTarget {
  id: string;
  description: string;
  target: string;
  measured: string;
  met: boolean;
  missedBy: string | null;
}

/** Redis's own CPU seconds and command count, from INFO. */
interface RedisSample {
  cpuSeconds: number;
  calls: Record<string, number>;
  usec: Record<string, number>;
}

const IGNORED = new Set(['info', 'ping', 'client|setname', 'client|getname', 'client|info', 'hello']);

async function redisSample(url: string): Promise<RedisSample> {
  const { Redis } = await import('ioredis');
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    const text = await r.info('all');
    let cpu = 0;
    const calls: Record<string, number> = {};
    const usec: Record<string, number> = {};
    for (const line of text.split('\r\n')) {
      const i = line.indexOf(':');
      if (i < 0) continue;
      const k = line.slice(0, i);
      const v = line.slice(i + 1);
      if (k === 'used_cpu_sys' || k === 'used_cpu_user') cpu += Number(v);
      else if (k.startsWith('cmdstat_')) {
        const name = k.slice(8);
        if (IGNORED.has(name)) continue;
        calls[name] = Number(/calls=(\d+)/.exec(v)?.[1] ?? 0);
        usec[name] = Number(/usec=(\d+)/.exec(v)?.[1] ?? 0);
      }
    }
    return { cpuSeconds: cpu, calls, usec };
  } finally {
    r.disconnect();
  }
}

interface Proc {
  child: ChildProcess;
  pid: number;
  log: string[];
}

/**
 * Where the section builds the processes it runs: what the container images run (`npm run build`'s
 * dist/api.mjs and dist/worker.mjs, plain JavaScript), not the checkout's TypeScript through tsx, whose loader,
 * source maps and bigger heap cost the API ~0.1-0.8 and the worker ~1-2.6 CPU ms per image more (same
 * machine, back to back). Inside the repository, so the bundles' bare imports resolve from its node_modules.
 */
const DIST = join(REPO_ROOT, '.cache', 'pipeline-dist');

async function buildProcesses(): Promise<void> {
  // execFile rejects on a non-zero exit with the build's output in the error.
  await promisify(execFile)(process.execPath, [
    join(REPO_ROOT, 'scripts/build.mjs'),
    '--outdir',
    DIST,
    '--no-typecheck',
  ]);
}

/**
 * The node flags both processes start with: the shipped SERVICE_NODE_FLAGS (what the images run), then
 * EMBEDPOOL_PIPELINE_NODE_ARGS, which can add flags (`--cpu-prof --cpu-prof-dir=/tmp/prof`) or override a
 * shipped one (`--initial-old-space-size=0` is V8's own default: the run without the heap floor).
 */
function pipelineNodeArgs(): string[] {
  const extra = (process.env.EMBEDPOOL_PIPELINE_NODE_ARGS ?? '').split(' ').filter(Boolean);
  return [...SERVICE_NODE_FLAGS, ...extra];
}

function spawnEmbedpool(command: 'api' | 'worker', env: Record<string, string>): Proc {
  const child = spawn(process.execPath, [...pipelineNodeArgs(), join(DIST, `${command}.mjs`)], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  const keep = (d: Buffer) => {
    log.push(d.toString());
    if (log.length > 200) log.shift();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  return { child, pid: child.pid ?? -1, log };
}

async function stopProc(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = once(p.child, 'exit');
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

async function waitReady(url: string, procs: Proc[], seconds = 120): Promise<void> {
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    for (const p of procs) {
      if (p.child.exitCode !== null)
        throw new Error(`a service process exited (${p.child.exitCode}): ${p.log.join('').slice(-2000)}`);
    }
    const ok = await fetch(`${url}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    await sleep(250);
  }
  throw new Error(`the service did not become ready: ${procs.map((p) => p.log.join('').slice(-1000))}`);
}

interface Snapshot {
  at: number;
  ticks: { api: number; worker: number; azurite: number };
  /** The worker's ticks by thread name (`threadTicks`). */
  workerThreads: Record<string, number>;
  redis: RedisSample;
}

async function snapshot(redisUrl: string, pids: { api: number; worker: number; azurite: number }) {
  const redis = await redisSample(redisUrl);
  return {
    at: performance.now(),
    ticks: {
      api: processTicks(pids.api) ?? 0,
      worker: processTicks(pids.worker) ?? 0,
      azurite: processTicks(pids.azurite) ?? 0,
    },
    workerThreads: threadTicks(pids.worker),
    redis,
  } satisfies Snapshot;
}

interface Load {
  images: number;
  errors: number;
  firstError: string | null;
  /** Per request, ms (closed-loop phases). */
  latenciesMs?: number[];
}

function phaseFrom(
  name: string,
  clients: number,
  imagesPerRequest: number,
  a: Snapshot,
  b: Snapshot,
  load: Load,
  decodeMs: number,
  idle: { api: number; worker: number; redis: number },
): PipelinePhase {
  const n = Math.max(1, load.images);
  const wall = (b.at - a.at) / 1000;
  const gApi = ((b.ticks.api - a.ticks.api) * TICK_MS) / n;
  const gWorker = ((b.ticks.worker - a.ticks.worker) * TICK_MS) / n;
  const azurite = ((b.ticks.azurite - a.ticks.azurite) * TICK_MS) / n;
  const gRedis = ((b.redis.cpuSeconds - a.redis.cpuSeconds) * 1000) / n;
  const api = Math.max(0, gApi - (idle.api * wall) / n);
  const worker = Math.max(0, gWorker - (idle.worker * wall) / n);
  const redis = Math.max(0, gRedis - (idle.redis * wall) / n);
  const byName: Record<string, number> = {};
  let commands = 0;
  for (const [k, v] of Object.entries(b.redis.calls)) {
    const d = v - (a.redis.calls[k] ?? 0);
    if (d > 0) {
      byName[k] = round(d / n, 2);
      commands += d;
    }
  }
  const usecByName: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.redis.usec)) {
    const d = v - (a.redis.usec[k] ?? 0);
    if (d > 0) usecByName[k] = round(d / n, 1);
  }
  const total = api + worker + redis;
  const workerThreads: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.workerThreads)) {
    const d = v - (a.workerThreads[k] ?? 0);
    if (d > 0) workerThreads[k] = round((d * TICK_MS) / n, 2);
  }
  return {
    name,
    clients,
    imagesPerRequest,
    images: load.images,
    errors: load.errors,
    firstError: load.firstError,
    wallSeconds: round(wall, 2),
    imagesPerSec: round(load.images / wall, 1),
    cpuMsPerImage: {
      api: round(api, 2),
      worker: round(worker, 2),
      redis: round(redis, 3),
      total: round(total, 2),
      azurite: round(azurite, 2),
    },
    workerThreadMsPerImage: workerThreads,
    grossCpuMsPerImage: {
      api: round(gApi, 2),
      worker: round(gWorker, 2),
      redis: round(gRedis, 3),
      total: round(gApi + gWorker + gRedis, 2),
    },
    decodeMsPerImage: decodeMs,
    ratioToAdjacentDecode: round(total / decodeMs, 2),
    // Set once every phase has run: the run's fastest decode alone is known only then.
    ratioToDecode: 0,
    redisCommandsPerImage: round(commands / n, 2),
    redisCommandsByName: Object.fromEntries(
      Object.entries(byName)
        .sort((x, y) => y[1] - x[1])
        .slice(0, 12),
    ),
    redisUsecByName: Object.fromEntries(
      Object.entries(usecByName)
        .sort((x, y) => y[1] - x[1])
        .slice(0, 12),
    ),
    redisBoundImagesPerSec: redis > 0 ? Math.round(1000 / redis) : null,
    latencyP50Ms: load.latenciesMs?.length ? round(median(load.latenciesMs), 1) : null,
    loadAverage: os.loadavg().map((l) => round(l, 2)),
  };
}

/**
 * Waits (10 s at most) until the whole machine uses under 0.15 of a core over half a second: not only the
 * api, the worker and Azurite, but Redis, this process and anything else, so nothing competes with decode
 * alone for the cores or the caches while it is measured.
 */
async function quiet(): Promise<void> {
  for (let i = 0; i < 20; i++) {
    const a = cpuSnapshot([]);
    await sleep(500);
    const busy = cpuShare(a, cpuSnapshot([])).machineBusyCores;
    if (busy === null || busy < 0.15) return;
  }
}

/** Seconds of each decode-alone measurement (one before the phases, one after each). */
const DECODE_SECONDS = 2;

async function post(url: string, path: string, body: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  return { status: res.status, text: await res.text() };
}

/** Closed-loop clients until `seconds` pass; requests in flight then finish and count. */
async function closedLoop(
  clients: number,
  seconds: number,
  one: () => Promise<{ images: number; error: string | null }>,
): Promise<Load> {
  const load: Load = { images: 0, errors: 0, firstError: null, latenciesMs: [] };
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        const r = await one().catch((e: unknown) => ({ images: 0, error: String(e) }));
        if (!r.error) load.latenciesMs!.push(performance.now() - t0);
        load.images += r.images;
        if (r.error) {
          load.errors++;
          load.firstError ??= r.error.slice(0, 300);
        }
      }
    }),
  );
  return load;
}

const JOB_POLL_MS = 500;
const FINAL = new Set(['completed', 'partially_failed', 'failed', 'cancelled']);

/** Submits one job and waits for it, reading its status every JOB_POLL_MS as a client would. */
async function runJob(url: string, body: string, images: number, inline: boolean) {
  const created = await post(url, '/v1/jobs', body);
  if (created.status !== 202) return { images: 0, error: `${created.status} ${created.text}` };
  const { id } = JSON.parse(created.text) as { id: string };
  let state = 'queued';
  while (!FINAL.has(state)) {
    await sleep(JOB_POLL_MS);
    state = ((await (await fetch(`${url}/v1/jobs/${id}`)).json()) as { state: string }).state;
  }
  if (state !== 'completed') return { images: 0, error: `job ${id} ended ${state}` };
  if (inline) {
    const res = await fetch(`${url}/v1/jobs/${id}/result`, {
      headers: { accept: 'application/octet-stream' },
    });
    const buf = await res.arrayBuffer();
    if (buf.byteLength !== images * TINY_DINOV2.hidden_size * 4)
      return { images: 0, error: `result of ${buf.byteLength} bytes` };
  }
  return { images, error: null };
}

export async function runPipeline(input: PipelineInput): Promise<PipelineReport> {
  const loadAverageAtStart = os.loadavg().map((l) => round(l, 2));
  const dir = await mkdtemp(join(os.tmpdir(), 'embedpool-pipeline-'));
  const modelPath = join(dir, 'tiny-dinov2.onnx');
  const built = await writeDinov2Onnx({ config: TINY_DINOV2, seed: 0, out: modelPath });
  await writeFile(join(dir, 'preprocessor_config.json'), JSON.stringify(DINOV2_PREPROCESSOR_CONFIG));
  const imageName = 'china.jpg';
  const imagePath = join(PARITY_DIR, 'images', imageName);
  const imageBytes = readFileSync(imagePath);
  const base64 = imageBytes.toString('base64');
  const sharp = (await import('sharp')).default;
  const meta = await sharp(imageBytes).metadata();

  const redis = await startBenchRedis();
  let azurite: Azurite | undefined;
  let decoder: ChildHandle | undefined;
  const procs: Proc[] = [];
  try {
    azurite = await startAzurite();
    const azuritePid = findListener(azurite.port) ?? -1;
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const env: Record<string, string> = {
      NODE_ENV: 'development',
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      PORT: String(port),
      REDIS_URL: redis.url,
      REDIS_AUTOSTART: 'false',
      QUEUE_PREFIX: 'pipeline',
      MODEL_PATH: modelPath,
      MODEL_FETCH: 'false',
      BLOB_CONNECTION_STRING: azurite.connectionString,
      WORKER_METRICS_PORT: '0',
      MAX_BACKLOG_IMAGES: '0',
      RATE_LIMIT_REQUESTS: '0',
      // As a GPU worker runs (ORT_SPINNING=auto is off for cuda): the stand-in model is on the CPU provider.
      ORT_SPINNING: 'off',
      // Async jobs' images staged in the storage account, as a fleet deployment would run them.
      JOB_STAGING_CONTAINER: 'pipeline-staging',
      ...input.env,
    };
    for (const k of ['API_KEYS', 'AUTH', 'AUTH_JWT_ISSUER', 'METRICS_TOKEN']) delete process.env[k];
    await buildProcesses();
    procs.push(spawnEmbedpool('api', env), spawnEmbedpool('worker', env));
    const [api, worker] = procs as [Proc, Proc];
    await waitReady(url, procs);
    progress(`pipeline: api pid ${api.pid}, worker pid ${worker.pid}, redis pid ${redis.pid} at ${url}`);

    // Decode alone runs in a child process of its own, so the bench process's own work after a load phase
    // (garbage, sockets) cannot land in the measurement. The readings still drift up between phases (see
    // PipelinePhase.ratioToDecode): that is not it.
    decoder = ChildHandle.start('decode');
    const decodeAlone = () =>
      decoder!.call<DecodeAlone>('run', { imagePath, seconds: DECODE_SECONDS } satisfies DecodeAloneInput);
    await quiet();
    const decodes = [await decodeAlone()];
    progress(`pipeline: decode alone ${decodes[0]!.cpuMsPerImage} ms CPU per image (${imageName})`);
    const pids = { api: api.pid, worker: worker.pid, azurite: azuritePid };
    const phases: PipelinePhase[] = [];
    const measure = async (
      name: string,
      clients: number,
      perRequest: number,
      fn: () => Promise<Load>,
    ): Promise<void> => {
      const a = await snapshot(redis.url, pids);
      const load = await fn();
      const b = await snapshot(redis.url, pids);
      // Decode alone again right after, once the api, the worker and Azurite are idle again (a job's clean-up
      // or a GC still running would slow the decode and flatter the ratio): this phase's own yardstick.
      await quiet();
      const after = await decodeAlone();
      const before = decodes[decodes.length - 1]!;
      decodes.push(after);
      const decodeMs = round((before.cpuMsPerImage + after.cpuMsPerImage) / 2, 2);
      const ph = phaseFrom(name, clients, perRequest, a, b, load, decodeMs, idle);
      phases.push(ph);
      progress(
        `pipeline: ${name}: ${ph.imagesPerSec} img/s; CPU ms/img api ${ph.cpuMsPerImage.api} worker ` +
          `${ph.cpuMsPerImage.worker} redis ${ph.cpuMsPerImage.redis} = ${ph.ratioToAdjacentDecode}x decode around it; ` +
          `${ph.redisCommandsPerImage} Redis commands/img${load.errors ? `; ${load.errors} errors: ${load.firstError}` : ''}`,
      );
    };
    const scoreBody = (n: number) =>
      JSON.stringify({
        input_data: {
          columns: ['image'],
          index: Array.from({ length: n }, (_, i) => i),
          data: Array.from({ length: n }, () => [base64]),
        },
      });
    const score = (n: number) => {
      const body = scoreBody(n);
      return async () => {
        const r = await post(url, '/score', body);
        return r.status === 200 ? { images: n, error: null } : { images: 0, error: `${r.status} ${r.text}` };
      };
    };
    // Warm-up: JIT, connections, first allocations.
    await closedLoop(4, 2, score(1));
    // The background with no traffic, taken out of every phase's per-image figures.
    const i0 = await snapshot(redis.url, pids);
    await sleep(4_000);
    const i1 = await snapshot(redis.url, pids);
    const idleS = (i1.at - i0.at) / 1000;
    const idle = {
      api: round(((i1.ticks.api - i0.ticks.api) * TICK_MS) / idleS, 2),
      worker: round(((i1.ticks.worker - i0.ticks.worker) * TICK_MS) / idleS, 2),
      redis: round(((i1.redis.cpuSeconds - i0.redis.cpuSeconds) * 1000) / idleS, 3),
    };
    progress(`pipeline: idle background CPU ms/s: api ${idle.api} worker ${idle.worker} redis ${idle.redis}`);
    // One request at a time: every request meets an idle service (no coalescing): the latency floor.
    await measure('idle latency: one client, 1 image per request', 1, 1, () =>
      closedLoop(1, Math.min(5, input.seconds), score(1)),
    );
    await measure('/score, 1 image per request', 16, 1, () => closedLoop(16, input.seconds, score(1)));
    await measure('/score, 8 images per request', 4, 8, () => closedLoop(4, input.seconds, score(8)));

    const jobBody = (output: object) =>
      JSON.stringify({
        images: Array.from({ length: 64 }, (_, i) => ({ id: `img-${i}`, base64 })),
        output,
      });
    const inlineBody = jobBody({ type: 'inline' });
    await measure('/v1/jobs inline, 64 images per job', 4, 64, () =>
      closedLoop(4, input.seconds, () => runJob(url, inlineBody, 64, true)),
    );
    const blobBody = jobBody({ type: 'blob', container: 'pipeline-out', path: '{jobId}' });
    await measure('/v1/jobs blob, 64 images per job', 4, 64, () =>
      closedLoop(4, input.seconds, () => runJob(url, blobBody, 64, false)),
    );

    // Bulk ingestion: the blobs are uploaded first, outside the measurement.
    const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
    const src = service.getContainerClient('pipeline-src');
    await src.createIfNotExists();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < input.ingestBlobs) {
          const i = next++;
          await src.getBlockBlobClient(`img/${String(i).padStart(6, '0')}.jpg`).uploadData(imageBytes);
        }
      }),
    );
    await measure('bulk ingestion from Azurite', 1, input.ingestBlobs, async () => {
      const r = await post(
        url,
        '/v1/ingestions',
        JSON.stringify({
          source: { container: 'pipeline-src' },
          output: { container: 'pipeline-vectors', prefix: 'run', format: 'parquet' },
        }),
      );
      if (r.status !== 202) return { images: 0, errors: 1, firstError: `${r.status} ${r.text}` };
      const { id } = JSON.parse(r.text) as { id: string };
      for (;;) {
        await sleep(500);
        const st = (await (await fetch(`${url}/v1/ingestions/${id}`)).json()) as {
          state: string;
          counts: { done: number; failed: number };
        };
        if (FINAL.has(st.state) || st.state === 'partially_failed') {
          const ok = st.counts.done - st.counts.failed;
          return {
            images: ok,
            errors: st.counts.failed,
            firstError: st.state === 'completed' ? null : `ingestion ended ${st.state}`,
          };
        }
      }
    });

    const floor = Math.min(...decodes.map((d) => d.cpuMsPerImage));
    for (const ph of phases) ph.ratioToDecode = round(ph.cpuMsPerImage.total / floor, 2);
    return {
      model: { config: TINY_DINOV2, bytes: built.bytes },
      image: {
        name: imageName,
        bytes: imageBytes.byteLength,
        width: meta.width ?? 0,
        height: meta.height ?? 0,
      },
      decode: {
        cpuMsPerImage: floor,
        wallMsPerImage: round(median(decodes.map((d) => d.wallMsPerImage)), 2),
        reps: decodes.reduce((n, d) => n + d.reps, 0),
        samplesMs: decodes.map((d) => d.cpuMsPerImage),
      },
      settings: env,
      nodeArgs: pipelineNodeArgs(),
      idleCpuMsPerSecond: idle,
      phases,
      targets: pipelineTargets(phases),
      loadAverageAtStart,
      notes: [
        `Client-side status polls of /v1/jobs (every ${JOB_POLL_MS} ms) and of /v1/ingestions (every 500 ms) are ` +
          'counted: they are part of what an async caller costs.',
        `Per-image CPU has each process's idle background taken out (measured for 4 s before the phases: api ` +
          `${idle.api}, worker ${idle.worker}, Redis ${idle.redis} CPU ms/s); grossCpuMsPerImage keeps it.`,
        'Azurite CPU is shown apart (it stands in for Azure Storage) and is not in the total.',
      ],
    };
  } finally {
    await decoder?.close();
    await Promise.all(procs.map((p) => stopProc(p)));
    await azurite?.dispose().catch(() => {});
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The pid listening on a loopback TCP port (Azurite runs under npx: the listener is a grandchild). */
function findListener(port: number): number | null {
  try {
    const hex = port.toString(16).toUpperCase().padStart(4, '0');
    const inodes = new Set<string>();
    for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(f, 'utf8').split('\n').slice(1)) {
        const c = line.trim().split(/\s+/);
        if (c[1]?.endsWith(`:${hex}`) && c[3] === '0A') inodes.add(c[9]!);
      }
    }
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      try {
        for (const fd of readdirSync(`/proc/${pid}/fd`)) {
          const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
          const m = /^socket:\[(\d+)\]$/.exec(link);
          if (m && inodes.has(m[1]!)) return Number(pid);
        }
      } catch {
        // not ours to read
      }
    }
  } catch {
    // not Linux
  }
  return null;
}

interface TargetSpec {
  id: string;
  phase: (p: PipelinePhase) => boolean;
  redisMs: number;
  ratio: number;
  label: string;
}

const SPECS: TargetSpec[] = [
  { id: 'score', phase: (p) => p.name.startsWith('/score'), redisMs: 0.1, ratio: 1.6, label: '/score' },
  { id: 'jobs', phase: (p) => p.name.startsWith('/v1/jobs'), redisMs: 0.05, ratio: 1.3, label: 'async jobs' },
  { id: 'ingest', phase: (p) => p.name.startsWith('bulk'), redisMs: 0.02, ratio: 1.3, label: 'ingestion' },
];

export function pipelineTargets(phases: PipelinePhase[]): PipelineTarget[] {
  const out: PipelineTarget[] = [];
  for (const s of SPECS) {
    for (const p of phases.filter(s.phase)) {
      const r = p.cpuMsPerImage.redis;
      out.push({
        id: `pipeline-redis-${s.id}`,
        description: `Redis CPU per image, ${p.name}`,
        target: `<= ${s.redisMs} ms`,
        measured: `${r} ms (one Redis core: ~${p.redisBoundImagesPerSec ?? '-'} img/s)`,
        met: r <= s.redisMs,
        missedBy: r <= s.redisMs ? null : `${round(r - s.redisMs, 3)} ms (${round(r / s.redisMs, 1)}x)`,
      });
      out.push({
        id: `pipeline-total-${s.id}`,
        description: `CPU per image (api + worker + Redis) / decode alone, ${p.name}`,
        target: `<= ${s.ratio}x`,
        measured: `${p.cpuMsPerImage.total} ms = ${p.ratioToDecode}x`,
        met: p.ratioToDecode <= s.ratio,
        missedBy: p.ratioToDecode <= s.ratio ? null : `${round(p.ratioToDecode - s.ratio, 2)}x`,
      });
    }
  }
  return out;
}

/** The table docs/performance.md shows, in markdown. */
export function renderPipeline(r: PipelineReport): string {
  const lines = [
    `Near-zero-cost DINOv2 (hidden ${r.model.config.hidden_size}, ${r.model.config.num_hidden_layers} layer), ` +
      `\`node ${(r.nodeArgs ?? []).join(' ')} dist/api.mjs\` + \`dist/worker.mjs\` (built for the run, as the images run them) + private redis-server; image ${r.image.name} ` +
      `(${r.image.width}x${r.image.height}, ${Math.round(r.image.bytes / 1024)} KB, sent base64). ` +
      `Decode alone (sharp decode + resize + normalize, one at a time, in a process of its own, the machine quiet), ` +
      `measured before the first phase and after each: ${r.decode.samplesMs.join(', ')} ` +
      `ms CPU per image; "vs decode" (the verdicts) divides by the fastest, ${r.decode.cpuMsPerImage} ms; "vs decode around" ` +
      `by the mean of the two measurements around the phase. ` +
      `Idle background taken out (CPU ms/s): api ${r.idleCpuMsPerSecond.api}, worker ${r.idleCpuMsPerSecond.worker}, ` +
      `Redis ${r.idleCpuMsPerSecond.redis}. ` +
      `Load average at start ${r.loadAverageAtStart.join(' ')}.`,
    '',
    '| path | clients | img/s | p50 ms | CPU ms/img api / worker / Redis | total | vs decode | decode around | vs decode around | Redis cmds/img | one Redis core carries |',
    '| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.phases.map(
      (p) =>
        `| ${p.name} | ${p.clients} | ${p.imagesPerSec} | ${p.latencyP50Ms ?? '-'} | ${p.cpuMsPerImage.api} / ${p.cpuMsPerImage.worker} / ` +
        `**${p.cpuMsPerImage.redis}** | ${p.cpuMsPerImage.total} | ${p.ratioToDecode}x | ` +
        `${p.decodeMsPerImage} | ${p.ratioToAdjacentDecode}x | ${p.redisCommandsPerImage} | ` +
        `${p.redisBoundImagesPerSec ?? '-'} img/s |${p.errors ? ` (${p.errors} errors)` : ''}`,
    ),
    '',
    ...workerThreadTable(r.phases),
    '',
    '| target | measured | verdict |',
    '| --- | --- | --- |',
    ...r.targets.map(
      (t) =>
        `| ${t.description} ${t.target} | ${t.measured} | ${t.met ? 'met' : `missed by ${t.missedBy}`} |`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}

/** The worker's CPU per image by thread, one column per thread name seen in any phase. */
function workerThreadTable(phases: PipelinePhase[]): string[] {
  const names = [...new Set(phases.flatMap((p) => Object.keys(p.workerThreadMsPerImage ?? {})))].sort(
    (x, y) => (x === 'main' ? -1 : y === 'main' ? 1 : x.localeCompare(y)),
  );
  if (names.length === 0) return [];
  return [
    'Worker CPU ms per image by thread (gross, idle background included; `node` is every thread Node 20 leaves unnamed: V8 helpers, the libuv pool, the inference thread):',
    '',
    `| path | ${names.join(' | ')} |`,
    `| --- |${names.map(() => ' ---: |').join('')}`,
    ...phases.map(
      (p) => `| ${p.name} | ${names.map((k) => p.workerThreadMsPerImage?.[k] ?? 0).join(' | ')} |`,
    ),
  ];
}
