import { randomUUID } from 'node:crypto';
import { ChildHandle } from './children';
import { type CpuShare, cpuShare, cpuSnapshot } from './cpu';
import { progress } from './log';
import {
  type MonitorCount,
  type RedisDelta,
  type RedisMonitor,
  type RedisProbe,
  redisDelta,
  sumCounts,
} from './redis';
import type { ServerPhaseStats, ServerStarted, ServerStartInput } from './server';
import { median, round, roundSummary, type Summary, sleep, summarize } from './stats';

export interface BenchImage {
  name: string;
  base64: string;
  bytes: number;
}

/** The service in its own process, driven over HTTP from here (the load generator). */
export class ServerUnderTest {
  private constructor(
    private readonly child: ChildHandle,
    readonly started: ServerStarted,
  ) {}

  static async start(input: ServerStartInput, processEnv: NodeJS.ProcessEnv = {}): Promise<ServerUnderTest> {
    const child = ChildHandle.start('server', processEnv);
    try {
      const started = await child.call<ServerStarted>('start', input);
      return new ServerUnderTest(child, started);
    } catch (err) {
      child.kill();
      throw err;
    }
  }

  get url(): string {
    return this.started.url;
  }

  get pid(): number {
    return this.child.pid;
  }

  begin(): Promise<null> {
    return this.child.call('begin');
  }

  end(): Promise<ServerPhaseStats> {
    return this.child.call('end');
  }

  async stop(): Promise<void> {
    try {
      await this.child.call('stop');
    } finally {
      await this.child.close();
    }
  }
}

export interface Measured<T> {
  value: T;
  /** Tries it took (a noisy phase is measured again; the quietest is kept). */
  attempts?: number;
  wallSeconds: number;
  server: ServerPhaseStats;
  redis: RedisDelta;
  cpu: CpuShare;
}

/** Runs `fn` with the server's, Redis's and the machine's counters read around it. */
export async function measured<T>(
  sut: ServerUnderTest,
  probe: RedisProbe,
  pids: number[],
  fn: () => Promise<T>,
): Promise<Measured<T>> {
  const ra = await probe.counters();
  const ca = cpuSnapshot(pids);
  await sut.begin();
  const t0 = performance.now();
  const value = await fn();
  const wall = (performance.now() - t0) / 1000;
  const server = await sut.end();
  const cb = cpuSnapshot(pids);
  const rb = await probe.counters();
  return { value, wallSeconds: wall, server, redis: redisDelta(ra, rb, wall), cpu: cpuShare(ca, cb) };
}

export function scoreBody(images: BenchImage[]): string {
  return JSON.stringify({
    input_data: { columns: ['image'], index: images.map((_, i) => i), data: images.map((i) => [i.base64]) },
  });
}

export interface LoadResult {
  requests: number;
  images: number;
  errors: number;
  firstError: string | null;
  /** First request sent to last answer received. */
  wallSeconds: number;
  latenciesMs: number[];
}

async function postScore(url: string, body: string): Promise<{ ok: boolean; status: number; text: string }> {
  const res = await fetch(`${url}/score`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  const text = await res.text();
  return { ok: res.status === 200, status: res.status, text };
}

/**
 * Closed-loop clients: each sends a request, waits for the answer, sends the next, until `seconds` have
 * passed; requests in flight then finish and count. Bodies are built beforehand, so the client side costs
 * little more than the sockets.
 */
export async function scoreLoad(
  url: string,
  bodies: { body: string; images: number }[],
  concurrency: number,
  seconds: number,
): Promise<LoadResult> {
  let next = 0;
  const r: LoadResult = {
    requests: 0,
    images: 0,
    errors: 0,
    firstError: null,
    wallSeconds: 0,
    latenciesMs: [],
  };
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const b = bodies[next++ % bodies.length]!;
        const s = performance.now();
        const res = await postScore(url, b.body).catch((e: unknown) => ({
          ok: false,
          status: 0,
          text: String(e),
        }));
        r.requests++;
        if (res.ok) {
          r.images += b.images;
          r.latenciesMs.push(performance.now() - s);
        } else {
          r.errors++;
          r.firstError ??= `${res.status} ${res.text.slice(0, 300)}`;
        }
      }
    }),
  );
  r.wallSeconds = (performance.now() - t0) / 1000;
  return r;
}

/** One request at a time with a pause between: every request meets an idle service. */
export async function idleLatency(
  url: string,
  body: string,
  count: number,
  gapMs: number,
): Promise<LoadResult> {
  const r: LoadResult = {
    requests: 0,
    images: 0,
    errors: 0,
    firstError: null,
    wallSeconds: 0,
    latenciesMs: [],
  };
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    await sleep(gapMs);
    const s = performance.now();
    const res = await postScore(url, body);
    const ms = performance.now() - s;
    r.requests++;
    if (res.ok) {
      r.images++;
      r.latenciesMs.push(ms);
    } else {
      r.errors++;
      r.firstError ??= `${res.status} ${res.text.slice(0, 300)}`;
    }
  }
  r.wallSeconds = (performance.now() - t0) / 1000;
  return r;
}

export interface JobsResult extends LoadResult {
  jobs: number;
  states: string[];
  /** Submit to completed, per job. */
  jobLatenciesMs: number[];
  resultBytesOk: boolean;
}

const FINAL = new Set(['completed', 'partially_failed', 'failed', 'cancelled']);

/** Async jobs (inline output): submit them all at once, poll each until final, fetch each result. */
export async function jobsLoad(
  url: string,
  images: BenchImage[],
  jobs: number,
  perJob: number,
  pollMs: number,
  dim: number | null,
): Promise<JobsResult> {
  const r: JobsResult = {
    requests: 0,
    images: 0,
    errors: 0,
    firstError: null,
    wallSeconds: 0,
    latenciesMs: [],
    jobs,
    states: [],
    jobLatenciesMs: [],
    resultBytesOk: true,
  };
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: jobs }, async (_, j) => {
      const batch = Array.from({ length: perJob }, (_, i) => images[(j * perJob + i) % images.length]!);
      const body = JSON.stringify({
        images: batch.map((img, i) => ({ id: `${i}-${img.name}`, base64: img.base64 })),
        output: { type: 'inline' },
      });
      const s = performance.now();
      const res = await fetch(`${url}/v1/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      const created = (await res.json()) as { id?: string };
      r.requests++;
      if (res.status !== 202 || !created.id) {
        r.errors++;
        r.firstError ??= `${res.status} ${JSON.stringify(created).slice(0, 300)}`;
        return;
      }
      let state = 'queued';
      while (!FINAL.has(state)) {
        await sleep(pollMs);
        const st = (await (await fetch(`${url}/v1/jobs/${created.id}`)).json()) as { state: string };
        r.requests++;
        state = st.state;
      }
      const out = await fetch(`${url}/v1/jobs/${created.id}/result`, {
        headers: { accept: 'application/octet-stream' },
      });
      const buf = new Uint8Array(await out.arrayBuffer());
      r.requests++;
      const ms = performance.now() - s;
      r.states.push(state);
      r.jobLatenciesMs.push(ms);
      if (state === 'completed') {
        r.images += perJob;
        r.latenciesMs.push(ms);
      } else {
        r.errors++;
        r.firstError ??= `job ${created.id} ended ${state}`;
      }
      if (dim !== null && buf.byteLength !== perJob * dim * 4) r.resultBytesOk = false;
    }),
  );
  r.wallSeconds = (performance.now() - t0) / 1000;
  return r;
}

export interface PhaseReport {
  name: string;
  kind: 'latency' | 'score' | 'jobs' | 'idle';
  concurrency: number | null;
  imagesPerRequest: number | null;
  requests: number;
  images: number;
  errors: number;
  firstError: string | null;
  wallSeconds: number;
  imagesPerSec: number;
  /** Images per CPU-second of the bench's processes (service, load generator, redis-server). */
  imagesPerCoreSecond: number | null;
  latencyMs: Summary;
  server: Omit<ServerPhaseStats, 'batches'>;
  redis: RedisDelta & {
    /** All commands (with those inside scripts) per image. */
    commandsPerImage: number | null;
    netBytesPerImage: { in: number; out: number } | null;
  };
  cpu: CpuShare;
  attempts: number;
  /** Latency phases: median of (latency - the model run that served the request). */
  pairedOverheadMs?: number | null;
}

export function phaseReport(
  name: string,
  kind: PhaseReport['kind'],
  concurrency: number | null,
  imagesPerRequest: number | null,
  m: Measured<LoadResult>,
): PhaseReport {
  const v = m.value;
  const { batches: _batches, ...server } = m.server;
  const per = (x: number) => (v.images > 0 ? round(x / v.images, 1) : null);
  return {
    name,
    kind,
    concurrency,
    imagesPerRequest,
    requests: v.requests,
    images: v.images,
    errors: v.errors,
    firstError: v.firstError,
    wallSeconds: round(v.wallSeconds, 2),
    imagesPerSec: round(v.images / Math.max(1e-9, v.wallSeconds), 3),
    imagesPerCoreSecond:
      m.cpu.benchCores && v.images > 0 ? round(v.images / (m.cpu.benchCores * m.wallSeconds), 3) : null,
    latencyMs: roundSummary(summarize(v.latenciesMs), 1),
    server,
    redis: {
      ...m.redis,
      commandsPerImage: per(m.redis.commands),
      netBytesPerImage:
        v.images > 0
          ? {
              in: Math.round(m.redis.netInputBytes / v.images),
              out: Math.round(m.redis.netOutputBytes / v.images),
            }
          : null,
    },
    cpu: m.cpu,
    attempts: m.attempts ?? 1,
  };
}

export interface CommandsPerImage {
  clientPerImage: number;
  luaPerImage: number;
  clientByCommand: Record<string, number>;
  luaByCommand: Record<string, number>;
}

export interface AccountingReport {
  /** Sequential single-image /score requests counted with MONITOR. */
  scoreRequests: number;
  scoreSeconds: number;
  jobImages: number;
  jobSeconds: number;
  idleSeconds: number;
  /** Background commands per second with no traffic (heartbeats, blocking reads, stalled-job checks). */
  idlePerSecond: { client: number; lua: number; byCommand: Record<string, number> };
  /** Per image, background subtracted: commands clients sent (round trips) and those scripts ran. */
  score: CommandsPerImage;
  /** Closed-loop /score at `loadedConcurrency` clients for `loadedSeconds`: the same, amortised under load. */
  loadedConcurrency: number;
  loadedSeconds: number;
  loadedImages: number;
  scoreLoaded: CommandsPerImage;
  job: CommandsPerImage;
  note: string;
}

function perImage(
  c: MonitorCount,
  idle: MonitorCount,
  idleSeconds: number,
  seconds: number,
  images: number,
): CommandsPerImage {
  const net = (x: Record<string, number>, bg: Record<string, number>) => {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(x)) {
      const d = v - ((bg[k] ?? 0) / idleSeconds) * seconds;
      if (d > 0.05 * images) out[k] = round(d / images, 2);
    }
    return Object.fromEntries(Object.entries(out).sort((a, b) => b[1] - a[1]));
  };
  const client = net(c.client, idle.client);
  const lua = net(c.lua, idle.lua);
  return {
    clientPerImage: round(sumCounts(client), 1),
    luaPerImage: round(sumCounts(lua), 1),
    clientByCommand: client,
    luaByCommand: lua,
  };
}

/** Commands per image split into round trips and script bodies, with MONITOR; background measured and taken out. */
export async function redisAccounting(
  url: string,
  monitor: RedisMonitor,
  latencyBody: string,
  images: BenchImage[],
  opts: {
    scoreRequests: number;
    jobImages: number;
    idleSeconds: number;
    pollMs: number;
    dim: number | null;
    loadedConcurrency: number;
    loadedSeconds: number;
  },
): Promise<AccountingReport> {
  await monitor.take();
  const i0 = performance.now();
  await sleep(opts.idleSeconds * 1000);
  const idle = await monitor.take();
  const idleSeconds = (performance.now() - i0) / 1000;
  const s0 = performance.now();
  for (let i = 0; i < opts.scoreRequests; i++) await postScore(url, latencyBody);
  const scoreSeconds = (performance.now() - s0) / 1000;
  const score = await monitor.take();
  const l0 = performance.now();
  const bodies = images.map((img) => ({ body: scoreBody([img]), images: 1 }));
  const loaded = await scoreLoad(url, bodies, opts.loadedConcurrency, opts.loadedSeconds);
  const loadedSeconds = (performance.now() - l0) / 1000;
  const scoreLoaded = await monitor.take();
  const j0 = performance.now();
  await jobsLoad(url, images, 1, opts.jobImages, opts.pollMs, opts.dim);
  const jobSeconds = (performance.now() - j0) / 1000;
  const job = await monitor.take();
  return {
    scoreRequests: opts.scoreRequests,
    scoreSeconds: round(scoreSeconds, 2),
    jobImages: opts.jobImages,
    jobSeconds: round(jobSeconds, 2),
    idleSeconds: round(idleSeconds, 2),
    idlePerSecond: {
      client: round(sumCounts(idle.client) / idleSeconds, 2),
      lua: round(sumCounts(idle.lua) / idleSeconds, 2),
      byCommand: Object.fromEntries(
        Object.entries(idle.client).map(([k, v]) => [k, round(v / idleSeconds, 2)]),
      ),
    },
    score: perImage(score, idle, idleSeconds, scoreSeconds, opts.scoreRequests),
    loadedConcurrency: opts.loadedConcurrency,
    loadedSeconds: round(loadedSeconds, 2),
    loadedImages: loaded.images,
    scoreLoaded: perImage(scoreLoaded, idle, idleSeconds, loadedSeconds, Math.max(1, loaded.images)),
    job: perImage(job, idle, idleSeconds, jobSeconds, opts.jobImages),
    note:
      `MONITOR marks commands run inside Lua scripts ("lua"); the rest are round trips. The job figure includes ` +
      `the client's status polls (every ${opts.pollMs} ms) and one result fetch.`,
  };
}

/** Per request at concurrency 1: its latency minus the model run that served it (one batch each). */
export function pairedOverheadMs(latenciesMs: number[], inferMs: number[]): number | null {
  if (latenciesMs.length === 0 || latenciesMs.length !== inferMs.length) return null;
  return round(median(latenciesMs.map((l, i) => l - inferMs[i]!)), 2);
}

export function newPrefix(): string {
  return `bench-${randomUUID().slice(0, 8)}`;
}

export { progress };
