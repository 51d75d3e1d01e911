/**
 * The chaos soak: a fleet of 2 `embedpool api` + 3 `embedpool worker` processes on a private Redis (append-only,
 * volatile, or a 3-master append-only Redis Cluster) with Azurite and a callback receiver, driven with /score,
 * /v1/embeddings, async jobs (inline, blob, callback outputs) and an ingestion while workers, an API, Redis,
 * Azurite and the receiver fail on a schedule; then an audit of every piece of accepted work. Exits 1 on
 * anything lost, duplicated, wrong or drifting (docs/hardening.md, "The chaos soak").
 *
 *   npm run soak -- --minutes 2 [--redis aof|volatile|cluster] [--out results.json]
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createBlobServiceClient } from '@embedpool/core/blob';
import { verifySignature } from '@embedpool/core/delivery';
import { backlogOrphans, createRedis, keys, QUEUES } from '@embedpool/core/queue';
import { cosine, PARITY_MODEL, parityImages } from '@embedpool/testkit';
import { startAzurite } from '@embedpool/testkit/azurite-kit';
import { Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  FleetProcess,
  freePort,
  type RedisMode,
  rssOf,
  SoakRedis,
  SoakRedisCluster,
  type SoakStore,
} from './fleet';

// ---------------------------------------------------------------- arguments
const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '2' },
    redis: { type: 'string', default: 'aof' },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const MINUTES = Number(args.minutes);
if (!(MINUTES > 0)) fail('--minutes must be a positive number');
if (args.redis !== 'aof' && args.redis !== 'volatile' && args.redis !== 'cluster')
  fail('--redis must be aof, volatile or cluster');
const MODE = args.redis as RedisMode;
const LOAD_MS = MINUTES * 60_000;
const DRAIN_MS = 120_000;
const SECRET = 'soak-callback-secret-0123456789';
// Braced: QUEUE_PREFIX is a cluster hash tag, and the audit reads the keys under it directly.
const PREFIX = `{soak-${randomUUID().slice(0, 6)}}`;
const JOB_LOCK_MS = 5_000;

function fail(message: string): never {
  process.stderr.write(`soak: ${message}\n`);
  process.exit(2);
}
const t0 = Date.now();
const since = () => ((Date.now() - t0) / 1000).toFixed(1);
const say = (m: string) => process.stderr.write(`[${since()}s] ${m}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- images and references
const images = parityImages().filter((i) => i.reference && !i.name.includes('large')) as {
  name: string;
  path: string;
  reference: number[];
}[];
const bytes = new Map(images.map((i) => [i.name, readFileSync(i.path)]));
const pick = () => images[Math.floor(Math.random() * images.length)]!;
/** Vectors must match the PyTorch reference of the same model (the parity fixture's reference.json). */
const matches = (v: ArrayLike<number> | undefined, name: string) =>
  !!v && cosine(v, images.find((i) => i.name === name)!.reference) > 0.999;

// ---------------------------------------------------------------- bookkeeping
type Kind = 'score' | 'embeddings' | 'job-inline' | 'job-blob' | 'job-callback' | 'ingestion';
interface Tally {
  sent: number;
  accepted: number;
  completed: number;
  failed: number;
  lost: number;
  duplicated: number;
  wrong: number;
  stateLost: number;
}
const tally = new Map<Kind, Tally>();
const t = (k: Kind) => {
  let v = tally.get(k);
  if (!v) {
    v = { sent: 0, accepted: 0, completed: 0, failed: 0, lost: 0, duplicated: 0, wrong: 0, stateLost: 0 };
    tally.set(k, v);
  }
  return v;
};
/** Fault windows: label and span; an answer is counted in the window it arrived in. */
const windows: { label: string; from: number; to: number }[] = [];
const codes = new Map<string, Map<string, number>>();
const windowAt = (at: number) =>
  windows
    .filter((w) => at >= w.from && at <= w.to + 5_000)
    .map((w) => w.label)
    .at(-1) ?? 'calm';
const countCode = (at: number, code: string) => {
  const w = windowAt(at);
  const m = codes.get(w) ?? new Map<string, number>();
  m.set(code, (m.get(code) ?? 0) + 1);
  codes.set(w, m);
};
interface SyncCall {
  sentAt: number;
  doneAt: number;
  ok: boolean;
}
const syncCalls: SyncCall[] = [];
const takeovers: {
  fault: string;
  at: number;
  ms: number | null;
  jobs: number;
  notPicked: number;
  slowestAnswerMs: number | null;
  requests: number;
}[] = [];

// ---------------------------------------------------------------- infrastructure
const work = mkdtempSync(join(tmpdir(), 'embedpool-soak-'));
const logDir = join(work, 'logs');
rmSync(logDir, { recursive: true, force: true });
await import('node:fs').then((fs) => fs.mkdirSync(logDir, { recursive: true }));
let redisServer: SoakStore;
if (MODE === 'cluster') redisServer = await SoakRedisCluster.start(PREFIX);
else {
  const single = new SoakRedis(await freePort(), MODE, work);
  await single.start();
  redisServer = single;
}
// The fleet and the soak's BullMQ clients connect as the service does (a Cluster client with REDIS_CLUSTER);
// the audit reads the node holding the prefix's one slot with a plain client (SCAN, INFO, DBSIZE, EVAL).
const redisSettings = redisServer.settings;
const azurite = await startAzurite();
const blob = createBlobServiceClient({
  kind: 'connection-string',
  connectionString: azurite.connectionString,
});

// Images over loopback HTTP (URL inputs), and the callback receiver (fails 20% of the time, all of it in its
// outage window).
const imageServer = createServer((req, res) => {
  const b = bytes.get(decodeURIComponent((req.url ?? '/').slice(1)));
  if (!b) return void res.writeHead(404).end();
  res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(b);
});
let receiverDown = false;
// Deliveries are at least once with a stable Embedpool-Delivery-Id (docs/webhooks.md): the same id twice is
// a redelivery (the receiver dedupes it), two different ids for one job would be a duplicate.
const deliveries = new Map<string, { ok: number; ids: Set<string>; bodies: unknown[] }>();
let redeliveries = 0;
const receiver = createServer(async (req: IncomingMessage, res) => {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const raw = Buffer.concat(chunks);
  if (receiverDown || Math.random() < 0.2) return void res.writeHead(503).end();
  if (!verifySignature(SECRET, req.headers['embedpool-signature'] as string, raw))
    return void res.writeHead(401).end();
  const body = JSON.parse(raw.toString('utf8')) as { jobId: string };
  const d = deliveries.get(body.jobId) ?? { ok: 0, ids: new Set<string>(), bodies: [] };
  const deliveryId = String(req.headers['embedpool-delivery-id'] ?? '');
  if (d.ids.has(deliveryId)) redeliveries++;
  d.ids.add(deliveryId);
  d.ok++;
  d.bodies.push(body);
  deliveries.set(body.jobId, d);
  res.writeHead(200).end();
});
const listen = async (s: Server) => {
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return (s.address() as AddressInfo).port;
};
const imagePort = await listen(imageServer);
const receiverPort = await listen(receiver);
const imageUrl = (name: string) => `http://127.0.0.1:${imagePort}/${encodeURIComponent(name)}`;

// ---------------------------------------------------------------- the fleet
const common = {
  REDIS_URL: redisSettings.REDIS_URL,
  ...(redisSettings.REDIS_CLUSTER ? { REDIS_CLUSTER: 'true' } : {}),
  REDIS_AUTOSTART: 'false',
  QUEUE_PREFIX: PREFIX,
  LOG_LEVEL: 'info',
  BLOB_CONNECTION_STRING: azurite.connectionString,
  BLOB_RETRY_DELAY_MS: '200',
  CALLBACK_SECRET: SECRET,
  CALLBACK_BACKOFF_MS: '300',
  CALLBACK_ATTEMPTS: '20',
  FETCH_ALLOW: '127.0.0.0/8',
  JOB_ATTEMPTS: '5',
  JOB_LOCK_MS: String(JOB_LOCK_MS),
  REQUEST_TIMEOUT_MS: '30000',
  AUTH: 'none',
  ORT_DISABLE_TELEMETRY: '1',
};
const apis: FleetProcess[] = [];
for (let i = 0; i < 2; i++) {
  const port = await freePort();
  apis.push(
    new FleetProcess(`api-${i}`, 'api', { ...common, HOST: '127.0.0.1', PORT: String(port) }, logDir),
  );
}
const workers: FleetProcess[] = [];
for (let i = 0; i < 3; i++) {
  workers.push(
    new FleetProcess(
      `worker-${i}`,
      'worker',
      {
        ...common,
        MODEL_PATH: PARITY_MODEL,
        MODEL_ID: 'parity',
        WORKER_METRICS_PORT: '0',
        WORKER_PLAN: 'off',
        INFERENCE_THREADS: '1',
        INTRA_OP_THREADS: '1',
        MAX_BATCH_SIZE: '8',
        UV_THREADPOOL_SIZE: '4',
      },
      logDir,
    ),
  );
}
const everyone = () => [...apis, ...workers];
let stopping = false;
const cleanup = async () => {
  for (const p of everyone()) await p.kill().catch(() => {});
  for (const p of everyone()) p.close();
  imageServer.close();
  receiver.close();
  await redisServer.kill();
  await azurite.dispose().catch(() => {});
  if (!args.keep) rmSync(work, { recursive: true, force: true });
};
process.on('SIGINT', () => {
  stopping = true;
  void cleanup().then(() => process.exit(130));
});

say(`fleet: ${redisServer.description}, azurite ${azurite.port}, logs in ${logDir}`);
await Promise.all(everyone().map((p) => p.start()));
const apiUrl = (i: number) => `http://127.0.0.1:${apis[i]!.env.PORT}`;
const anyApi = () => apiUrl(Math.floor(Math.random() * apis.length));
const admin: Redis = createRedis(redisServer.adminUrl, 'consumer');
await once(admin, 'ready').catch(() => {});
for (;;) {
  const r = await fetch(`${apiUrl(0)}/readyz`).catch(() => undefined);
  if (r?.status === 200) break;
  await sleep(200);
}
say('fleet ready');
// When BullMQ hands a dead worker's job back (stalled) and when another worker starts it (active): the takeover.
const stalledAt = new Map<string, number>();
const pickedAt = new Map<string, number>();
const events = new QueueEvents(QUEUES.embed, {
  connection: createRedis(redisSettings, 'consumer'),
  prefix: PREFIX,
});
events.on('error', () => {});
events.on('stalled', ({ jobId }) => stalledAt.set(jobId, Date.now()));
events.on('active', ({ jobId }) => {
  if (stalledAt.has(jobId) && !pickedAt.has(jobId)) pickedAt.set(jobId, Date.now());
});
await events.waitUntilReady();

// ---------------------------------------------------------------- measurements of size
async function sizes() {
  const info = await admin.info('memory').catch(() => '');
  const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? Number.NaN);
  return {
    at: Date.now(),
    rss: Object.fromEntries(everyone().map((p) => [p.name, rssOf(p.pid)])),
    redisUsedMemory: used,
    redisKeys: await admin.dbsize().catch(() => Number.NaN),
  };
}

// ---------------------------------------------------------------- load
async function call(url: string, init: RequestInit, timeoutMs = 40_000) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json: json as Record<string, unknown> & { error?: { code?: string } } };
}
const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  call(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
const errCode = (e: unknown) => {
  const c = (e as { cause?: { code?: string }; name?: string }).cause?.code ?? (e as { name?: string }).name;
  return `conn:${c ?? 'error'}`;
};

async function scoreOnce(): Promise<void> {
  const n = 1 + Math.floor(Math.random() * 3);
  const imgs = Array.from({ length: n }, pick);
  const data = imgs.map((i) => [
    Math.random() < 0.5 ? imageUrl(i.name) : bytes.get(i.name)!.toString('base64'),
  ]);
  const k = t('score');
  k.sent++;
  const sentAt = Date.now();
  try {
    const r = await post(`${anyApi()}/score`, {
      input_data: { columns: ['image'], index: imgs.map((_, i) => i), data },
    });
    const doneAt = Date.now();
    countCode(doneAt, String(r.status === 200 ? 200 : `${r.status} ${r.json?.error?.code ?? ''}`));
    syncCalls.push({ sentAt, doneAt, ok: r.status === 200 });
    if (r.status !== 200) return void k.failed++;
    k.accepted++;
    const rows = r.json as unknown as { image_features: number[] }[];
    if (rows.length !== n || !rows.every((row, i) => matches(row.image_features, imgs[i]!.name))) k.wrong++;
    else k.completed++;
  } catch (e) {
    countCode(Date.now(), errCode(e));
    syncCalls.push({ sentAt, doneAt: Date.now(), ok: false });
    k.failed++;
  }
}

async function embeddingsOnce(): Promise<void> {
  const imgs = Array.from({ length: 1 + Math.floor(Math.random() * 2) }, pick);
  const k = t('embeddings');
  k.sent++;
  try {
    const r = await post(`${anyApi()}/v1/embeddings`, {
      model: 'parity',
      input: imgs.map((i) => `data:image/png;base64,${bytes.get(i.name)!.toString('base64')}`),
      encoding_format: 'float',
    });
    countCode(
      Date.now(),
      String(r.status === 200 ? 200 : `${r.status} ${(r.json?.error as { code?: string })?.code ?? ''}`),
    );
    if (r.status !== 200) return void k.failed++;
    k.accepted++;
    const rows = (r.json as unknown as { data: { index: number; embedding: number[] }[] }).data;
    if (rows.length !== imgs.length || !rows.every((row) => matches(row.embedding, imgs[row.index]!.name)))
      k.wrong++;
    else k.completed++;
  } catch (e) {
    countCode(Date.now(), errCode(e));
    k.failed++;
  }
}

interface SubmittedJob {
  kind: 'job-inline' | 'job-blob' | 'job-callback';
  key: string;
  ids: Set<string>;
  images: string[];
  final?: string;
  finalAnswers: number;
  statusSeen: number[];
}
const jobs: SubmittedJob[] = [];

async function jobOnce(kind: SubmittedJob['kind']): Promise<void> {
  const imgs = Array.from({ length: 2 + Math.floor(Math.random() * 3) }, pick);
  const output =
    kind === 'job-inline'
      ? { type: 'inline' }
      : kind === 'job-blob'
        ? { type: 'blob', container: 'soak-jobs', path: 'out/{jobId}', npy: Math.random() < 0.5 }
        : { type: 'callback', url: `http://127.0.0.1:${receiverPort}/hook` };
  const body = {
    images: imgs.map((img, i) =>
      i % 2
        ? { id: `i${i}`, url: imageUrl(img.name) }
        : { id: `i${i}`, base64: bytes.get(img.name)!.toString('base64') },
    ),
    output,
  };
  const job: SubmittedJob = {
    kind,
    key: randomUUID(),
    ids: new Set(),
    images: imgs.map((i) => i.name),
    finalAnswers: 0,
    statusSeen: [],
  };
  const k = t(kind);
  k.sent++;
  // Retried with the same Idempotency-Key on 5xx, 409 and lost connections, as a careful client does.
  const until = Date.now() + 90_000;
  while (Date.now() < until && !stopping) {
    try {
      const r = await post(`${anyApi()}/v1/jobs`, body, { 'idempotency-key': job.key });
      countCode(Date.now(), String(r.status < 300 ? r.status : `${r.status} ${r.json?.error?.code ?? ''}`));
      job.statusSeen.push(r.status);
      if (r.status === 202 || r.status === 200) {
        job.ids.add(String(r.json.id));
        if (job.ids.size === 1 && !jobs.includes(job)) {
          jobs.push(job);
          k.accepted++;
        }
        // A second submission, later, must give the same job back.
        if (job.statusSeen.filter((s) => s === 202 || s === 200).length >= 2) return;
        await sleep(500);
        continue;
      }
      if (r.status < 500 && r.status !== 409 && r.status !== 429) return void k.failed++;
    } catch (e) {
      countCode(Date.now(), errCode(e));
    }
    await sleep(1000);
  }
  if (job.ids.size === 0) k.failed++;
}

// ---------------------------------------------------------------- the ingestion
const INGEST_BLOBS = 60;
const ingestion: { id?: string; final?: string; statusSeen: number[] } = { statusSeen: [] };
async function startIngestion(): Promise<void> {
  const src = blob.getContainerClient('soak-src');
  await src.createIfNotExists();
  for (let i = 0; i < INGEST_BLOBS; i++) {
    const img = images[i % images.length]!;
    await src
      .getBlockBlobClient(`p/${String(i).padStart(4, '0')}-${img.name}`)
      .uploadData(bytes.get(img.name)!);
  }
  t('ingestion').sent++;
  for (let tries = 0; tries < 30; tries++) {
    try {
      const r = await post(`${anyApi()}/v1/ingestions`, {
        source: { container: 'soak-src', prefix: 'p/' },
        output: { container: 'soak-ing', prefix: 'run', format: 'jsonl' },
      });
      ingestion.statusSeen.push(r.status);
      if (r.status === 202) {
        ingestion.id = String(r.json.id);
        t('ingestion').accepted++;
        return;
      }
    } catch {
      // an API down: try the other one
    }
    await sleep(1000);
  }
}

// ---------------------------------------------------------------- faults
async function window(label: string, fn: () => Promise<void>): Promise<void> {
  // Open-ended while the fault lasts: answers arriving meanwhile belong to it.
  const w = { label, from: Date.now(), to: Number.POSITIVE_INFINITY };
  windows.push(w);
  say(`fault: ${label}`);
  try {
    await fn();
  } finally {
    w.to = Date.now();
  }
}
const randomWorker = () => workers[Math.floor(Math.random() * workers.length)]!;
/** A burst of /score requests just before a worker fault, so that the worker surely holds some. */
async function burst(): Promise<void> {
  for (let i = 0; i < 18; i++) void scoreOnce();
  await sleep(300);
}
async function measureTakeover(fault: string, at: number): Promise<void> {
  await sleep(35_000);
  // Takeover: from the fault until another worker started the last of the jobs BullMQ found stalled.
  // Stalls up to the next fault (or 30 s) belong to this one: a SIGSTOP soon after a SIGKILL is its own.
  const until = Math.min(at + 30_000, windows.find((w) => w.from > at)?.from ?? Number.POSITIVE_INFINITY);
  const taken = [...stalledAt.entries()].filter(([, when]) => when >= at && when < until);
  const picked = taken.map(([id]) => pickedAt.get(id)).filter((x): x is number => x !== undefined);
  // What callers saw: the slowest /score answer among requests sent before the fault and answered after it.
  const affected = syncCalls.filter((c) => c.sentAt < at && c.doneAt > at && c.ok);
  takeovers.push({
    fault,
    at: at - t0,
    ms: picked.length ? Math.max(...picked) - at : null,
    jobs: taken.length,
    notPicked: taken.length - picked.length,
    slowestAnswerMs: affected.length ? Math.max(...affected.map((c) => c.doneAt - at)) : null,
    requests: affected.length,
  });
}
const faults: (() => Promise<void>)[] = [
  () =>
    window('worker SIGKILL', async () => {
      const w = randomWorker();
      await burst();
      const at = Date.now();
      await w.kill();
      void measureTakeover('worker SIGKILL', at);
      await sleep(3_000);
      await w.start();
    }),
  () =>
    window('worker SIGSTOP 2x lock', async () => {
      const w = randomWorker();
      await burst();
      const at = Date.now();
      w.signal('SIGSTOP');
      void measureTakeover('worker SIGSTOP', at);
      await sleep(JOB_LOCK_MS * 2);
      w.signal('SIGCONT');
    }),
  () =>
    window('API SIGKILL', async () => {
      const a = apis[Math.floor(Math.random() * apis.length)]!;
      await a.kill();
      await sleep(2_000);
      await a.start();
    }),
  () =>
    window(redisServer.crashLabel, async () => {
      await redisServer.crash();
    }),
  () =>
    window('azurite outage', async () => {
      await azurite.stop();
      await sleep(8_000);
      await azurite.restart();
    }),
  () =>
    window('callback receiver down', async () => {
      receiverDown = true;
      await sleep(10_000);
      receiverDown = false;
    }),
];

// ---------------------------------------------------------------- the run
const start = await sizes();
const loadEnd = Date.now() + LOAD_MS;
const loops: Promise<void>[] = [];
const loop = (everyMs: number, fn: () => Promise<void>) =>
  loops.push(
    (async () => {
      const inFlight = new Set<Promise<void>>();
      while (Date.now() < loadEnd && !stopping) {
        const p = fn().finally(() => inFlight.delete(p));
        inFlight.add(p);
        await sleep(everyMs * (0.5 + Math.random()));
      }
      await Promise.all(inFlight);
    })(),
  );
loop(250, scoreOnce);
loop(1_000, embeddingsOnce);
let jobTurn = 0;
loop(1_500, () => jobOnce((['job-inline', 'job-blob', 'job-callback'] as const)[jobTurn++ % 3]!));
const ingestionStarted = startIngestion();
const faultLoop = (async () => {
  // Every fault once per ~2 minutes of load, in fixed slots (a fault that overruns its slot delays the next).
  const rounds = Math.max(1, Math.floor(MINUTES / 2));
  const slots = rounds * faults.length;
  const slotMs = (LOAD_MS - 15_000) / slots;
  const first = Date.now() + 5_000;
  for (let i = 0; i < slots && !stopping; i++) {
    const startAt = first + i * slotMs;
    if (Date.now() < startAt) await sleep(startAt - Date.now());
    if (Date.now() > loadEnd - 5_000) break;
    await faults[i % faults.length]!();
  }
})();
await Promise.all([...loops, faultLoop, ingestionStarted]);
say('load over; waiting for every accepted job to reach a final state');

// ---------------------------------------------------------------- drain and audit
const drainEnd = Date.now() + DRAIN_MS;
const FINAL = new Set(['completed', 'partially_failed', 'failed', 'cancelled']);
async function state(path: string) {
  for (let i = 0; i < apis.length; i++) {
    try {
      return await call(`${apiUrl(i)}${path}`, {});
    } catch {
      // try the other API
    }
  }
  return { status: 0, json: {} as Record<string, unknown> & { error?: { code?: string } } };
}
while (Date.now() < drainEnd) {
  let open = 0;
  for (const job of jobs) {
    if (job.final) continue;
    // The newest id: after Redis lost its data a retried submission legitimately makes a new job.
    const id = [...job.ids].at(-1)!;
    const r = await state(`/v1/jobs/${id}`);
    if (r.status === 200 && FINAL.has(String(r.json.state))) job.final = String(r.json.state);
    else if (r.status === 410) job.final = 'STATE_LOST';
    else if (r.status === 404) job.final = 'UNKNOWN(404)';
    else open++;
  }
  if (ingestion.id && !ingestion.final) {
    const r = await state(`/v1/ingestions/${ingestion.id}`);
    if (r.status === 200 && FINAL.has(String(r.json.state))) ingestion.final = String(r.json.state);
    else if (r.status === 410) ingestion.final = 'STATE_LOST';
    else if (r.status === 404) ingestion.final = 'UNKNOWN(404)';
    else open++;
  }
  const callbacksOpen = jobs.filter(
    (j) => j.kind === 'job-callback' && j.final === 'completed' && !deliveries.get([...j.ids].at(-1)!),
  ).length;
  if (open === 0 && callbacksOpen === 0) break;
  await sleep(1_000);
}

// Jobs: final exactly once, vectors right.
const lostBlobIds: string[] = [];
for (const job of jobs) {
  const k = t(job.kind);
  const id = [...job.ids].at(-1)!;
  // Two jobs for one Idempotency-Key are a duplicate, unless the earlier one was lost with Redis's data.
  for (const earlier of [...job.ids].slice(0, -1)) {
    if ((await state(`/v1/jobs/${earlier}`)).status !== 410) k.duplicated++;
    else if (job.kind === 'job-blob') lostBlobIds.push(earlier);
  }
  if (job.final === 'STATE_LOST' && job.kind === 'job-blob') lostBlobIds.push(id);
  if (job.final === 'STATE_LOST') {
    k.stateLost++;
    continue;
  }
  if (!job.final || job.final === 'UNKNOWN(404)') {
    k.lost++;
    continue;
  }
  if (job.final !== 'completed') {
    k.failed++;
    continue;
  }
  let vectors: (number[] | undefined)[] = [];
  if (job.kind === 'job-inline') {
    const r = await state(`/v1/jobs/${id}/result`);
    vectors = ((r.json.items as { image_features?: number[] }[] | undefined) ?? []).map(
      (i) => i.image_features,
    );
  } else if (job.kind === 'job-blob') {
    const text = (
      await blob
        .getContainerClient('soak-jobs')
        .getBlobClient(`out/${id}.jsonl`)
        .downloadToBuffer()
        .catch(() => Buffer.alloc(0))
    ).toString();
    vectors = text
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { image_features: number[] }).image_features);
  } else {
    const d = deliveries.get(id);
    if (!d) {
      k.lost++;
      continue;
    }
    if (d.ids.size > 1) k.duplicated++;
    vectors = ((d.bodies[0] as { items: { image_features?: number[] }[] }).items ?? []).map(
      (i) => i.image_features,
    );
  }
  if (vectors.length === job.images.length && vectors.every((v, i) => matches(v, job.images[i]!)))
    k.completed++;
  else k.wrong++;
}

// The ingestion: every source blob exactly once in the output, with the right vector.
if (ingestion.id) {
  const k = t('ingestion');
  if (ingestion.final === 'STATE_LOST') k.stateLost++;
  else if (ingestion.final !== 'completed') k[ingestion.final ? 'failed' : 'lost']++;
  else {
    const out = blob.getContainerClient('soak-ing');
    const manifest = JSON.parse(
      (await out.getBlobClient('run/_manifest.json').downloadToBuffer()).toString(),
    ) as {
      shards: { name: string }[];
    };
    const seen = new Map<string, number>();
    let wrong = 0;
    for (const s of manifest.shards) {
      const text = (await out.getBlobClient(`run/${s.name}`).downloadToBuffer()).toString();
      for (const line of text.split('\n').filter(Boolean)) {
        const row = JSON.parse(line) as { blob_name: string; vector: number[] };
        seen.set(row.blob_name, (seen.get(row.blob_name) ?? 0) + 1);
        if (!matches(row.vector, row.blob_name.replace(/^p\/\d{4}-/, ''))) wrong++;
      }
    }
    const dup = [...seen.values()].filter((n) => n > 1).length;
    if (seen.size !== INGEST_BLOBS) k.lost++;
    else if (dup > 0) k.duplicated++;
    else if (wrong > 0) k.wrong++;
    else k.completed++;
  }
}

// Redis: the backlog equals the queue's real content (after the sweeper had its two sweeps), and nothing
// per-request is left without an expiry.
const queue = new Queue(QUEUES.embed, {
  connection: createRedis(redisSettings, 'consumer'),
  prefix: PREFIX,
});
let drift = { backlogEntries: 0, orphans: [] as string[], unbacked: [] as string[] };
for (let i = 0; i < 30; i++) {
  const pending = await queue.getJobs(['waiting', 'active', 'delayed', 'prioritized', 'paused']);
  const ids = new Set(pending.map((j) => j?.id).filter(Boolean) as string[]);
  const backlog = await admin.hkeys(keys.backlog(PREFIX));
  drift = {
    backlogEntries: backlog.length,
    orphans: await backlogOrphans(admin, PREFIX, queue.toKey('')),
    unbacked: [...ids].filter((id) => !backlog.includes(id)),
  };
  if (drift.orphans.length === 0 && drift.unbacked.length === 0) break;
  await sleep(1_000);
}
await queue.close();
const PER_ITEM =
  /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|ing-[0-9a-z]{9}-[0-9a-f]{8}|dlv_/;
const stale: string[] = [];
let cursor = '0';
do {
  const [next, found] = await admin.scan(cursor, 'MATCH', `${PREFIX}:*`, 'COUNT', 1000);
  cursor = next;
  for (const key of found) {
    if (!PER_ITEM.test(key)) continue;
    if ((await admin.ttl(key)) !== -1) continue;
    // BullMQ keeps failed jobs (and its per-job logs) for inspection, bounded by removeOnFail: not a leak.
    const id = PER_ITEM.exec(key)![0];
    const inFailed =
      (await admin.zscore(`${PREFIX}:${QUEUES.embed}:failed`, id)) ??
      (await admin.zscore(`${PREFIX}:${QUEUES.deliveries}:failed`, id));
    if (inFailed !== null) continue;
    stale.push(key);
  }
} while (cursor !== '0');

const end = await sizes();
// Volatile Redis: the recovery report must list the blob outputs of lost jobs.
let recovery: { jobs: number; lostBlobJobsWithOutput: number; listed: number } | undefined;
if (MODE === 'volatile') {
  const { recoveryReport } = await import('@embedpool/core/recovery');
  const report = await recoveryReport({
    redis: admin,
    prefix: PREFIX,
    blob,
    containers: ['soak-jobs', 'soak-ing'],
    recordTtlSeconds: 7 * 24 * 3600,
  });
  // Every lost blob job whose output set was completed in storage must be in the report.
  const listed = new Set(report.jobs.map((j) => j.jobId));
  const withOutput: string[] = [];
  for (const id of lostBlobIds) {
    if (await blob.getContainerClient('soak-jobs').getBlobClient(`out/${id}.manifest.json`).exists())
      withOutput.push(id);
  }
  recovery = {
    jobs: report.jobs.length,
    lostBlobJobsWithOutput: withOutput.length,
    listed: withOutput.filter((id) => listed.has(id)).length,
  };
}

// ---------------------------------------------------------------- report
const sum = (f: keyof Tally) => [...tally.values()].reduce((a, v) => a + v[f], 0);
const lost = sum('lost');
const duplicated = sum('duplicated');
const wrong = sum('wrong');
const driftCount = drift.orphans.length + drift.unbacked.length;
const slowTakeover = takeovers.filter((x) => (x.ms !== null && x.ms > 10_000) || x.notPicked > 0);
const latencies = syncCalls
  .filter((c) => c.ok)
  .map((c) => c.doneAt - c.sentAt)
  .sort((a, b) => a - b);
const pct = (p: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
const rows = [...tally.entries()].map(([kind, v]) => ({ kind, ...v }));
// /score latency of requests sent while a worker was dead or frozen (and the 5 s after).
const workerFaults = windows.filter((w) => w.label.startsWith('worker'));
const duringFault = syncCalls
  .filter((c) => c.ok && workerFaults.some((w) => c.sentAt >= w.from - 1_000 && c.sentAt <= w.to + 5_000))
  .map((c) => c.doneAt - c.sentAt)
  .sort((a, b) => a - b);
const faultP99 = duringFault[Math.min(duringFault.length - 1, Math.floor(0.99 * duringFault.length))] ?? 0;
const result = {
  command: `npm run soak -- --minutes ${MINUTES} --redis ${MODE}`,
  startedAt: new Date(t0).toISOString(),
  seconds: Math.round((Date.now() - t0) / 1000),
  redis: MODE,
  work: rows,
  codesByWindow: Object.fromEntries([...codes.entries()].map(([w, m]) => [w, Object.fromEntries(m)])),
  faults: windows.map((w) => ({ label: w.label, at: (w.from - t0) / 1000, seconds: (w.to - w.from) / 1000 })),
  takeovers,
  scoreLatencyMs: { p50: pct(50), p99: pct(99), max: latencies.at(-1) ?? 0, n: latencies.length },
  scoreLatencyDuringWorkerFaultsMs: { p99: faultP99, max: duringFault.at(-1) ?? 0, n: duringFault.length },
  backlog: {
    entries: drift.backlogEntries,
    orphans: drift.orphans.slice(0, 10),
    unbacked: drift.unbacked.slice(0, 10),
  },
  staleKeysWithoutExpiry: stale.slice(0, 20),
  staleKeyCount: stale.length,
  sizes: { start, end },
  restarts: Object.fromEntries(everyone().map((p) => [p.name, p.starts - 1])),
  workerLogWarnings: Object.fromEntries(
    workers.map((w) => [w.name, [...new Set(w.interesting.map((l) => l.msg))].slice(0, 8)]),
  ),
  recovery,
  callbackRedeliveries: redeliveries,
};

const pad = (s: unknown, n: number) => String(s).padEnd(n);
const lines: string[] = [];
lines.push(`\nchaos soak: ${result.command} (${result.seconds} s)\n`);
lines.push(
  `${pad('kind', 14)}${['sent', 'accepted', 'completed', 'failed', 'lost', 'dup', 'wrong', 'STATE_LOST'].map((h) => pad(h, 11)).join('')}`,
);
for (const r of rows)
  lines.push(
    `${pad(r.kind, 14)}${[r.sent, r.accepted, r.completed, r.failed, r.lost, r.duplicated, r.wrong, r.stateLost].map((x) => pad(x, 11)).join('')}`,
  );
lines.push('\nanswers by fault window (window = fault start .. its end + 5 s):');
const windowWidth = Math.max(26, ...Object.keys(result.codesByWindow).map((w) => w.length + 2));
for (const [w, m] of Object.entries(result.codesByWindow))
  lines.push(
    `  ${pad(w, windowWidth)}${Object.entries(m)
      .map(([c, n]) => `${c}: ${n}`)
      .join(', ')}`,
  );
lines.push(
  '\ntakeover (fault -> last stalled job started by another worker; slowest answer in flight at the fault):',
);
for (const x of takeovers)
  lines.push(
    `  ${pad(x.fault, 18)} at ${(x.at / 1000).toFixed(0)} s: ${x.ms === null ? 'no job held' : `${(x.ms / 1000).toFixed(1)} s`} ` +
      `(${x.jobs} jobs taken over${x.notPicked ? `, ${x.notPicked} never started` : ''}); slowest answer ` +
      `${x.slowestAnswerMs === null ? '-' : `${(x.slowestAnswerMs / 1000).toFixed(1)} s`} (${x.requests} requests)`,
  );
lines.push(
  `\n/score latency (ok answers): p50 ${pct(50)} ms, p99 ${pct(99)} ms, max ${result.scoreLatencyMs.max} ms, n ${latencies.length}`,
);
lines.push(
  `/score latency, sent during worker faults (and 5 s after): p99 ${faultP99} ms, max ${duringFault.at(-1) ?? 0} ms, n ${duringFault.length}`,
);
lines.push(
  `callbacks accepted twice under the same delivery id (at-least-once, deduped by id): ${redeliveries}`,
);
lines.push(
  `backlog: ${drift.backlogEntries} entries at the end; ${drift.orphans.length} without a job, ${drift.unbacked.length} jobs not counted`,
);
lines.push(
  `keys without expiry left by requests: ${stale.length}${stale.length ? ` (${stale.slice(0, 5).join(', ')})` : ''}`,
);
lines.push('\nsizes (start -> end):');
for (const name of Object.keys(start.rss))
  lines.push(
    `  ${pad(name, 10)} RSS ${((start.rss[name] ?? 0) / 2 ** 20).toFixed(0)} MiB -> ${((end.rss[name] ?? 0) / 2 ** 20).toFixed(0)} MiB (restarts ${result.restarts[name]})`,
  );
lines.push(
  `  redis      used_memory ${(start.redisUsedMemory / 2 ** 20).toFixed(1)} MiB -> ${(end.redisUsedMemory / 2 ** 20).toFixed(1)} MiB, keys ${start.redisKeys} -> ${end.redisKeys}`,
);
if (recovery)
  lines.push(
    `recovery report: ${recovery.jobs} job outputs without a record; lists ${recovery.listed} of the ${recovery.lostBlobJobsWithOutput} lost blob jobs whose output is in storage`,
  );

// Verdict. AOF: nothing lost, duplicated, wrong or drifting, every takeover under 10 s. Volatile: work lost
// with Redis's data must be reported as lost (410 STATE_LOST), never as unknown (404).
const problems: string[] = [];
if (recovery && recovery.listed < recovery.lostBlobJobsWithOutput)
  problems.push(
    `${recovery.lostBlobJobsWithOutput - recovery.listed} lost outputs missing from the recovery report`,
  );
if (duplicated) problems.push(`${duplicated} duplicated`);
if (wrong) problems.push(`${wrong} wrong`);
if (lost) problems.push(`${lost} lost (unknown or never final)`);
if (driftCount) problems.push(`backlog drift ${driftCount}`);
if (stale.length) problems.push(`${stale.length} keys without expiry`);
if (MODE === 'aof' || MODE === 'cluster') {
  if (sum('stateLost')) problems.push(`${sum('stateLost')} STATE_LOST on a persistent Redis`);
  if (slowTakeover.length) problems.push(`${slowTakeover.length} takeovers over 10 s (or never)`);
}
lines.push(`\nverdict: ${problems.length ? `FAIL: ${problems.join(', ')}` : 'PASS'}\n`);
process.stdout.write(lines.join('\n'));
if (args.out) writeFileSync(args.out, `${JSON.stringify({ ...result, problems }, null, 2)}\n`);
stopping = true;
await events.close().catch(() => {});
admin.disconnect();
await cleanup();
process.exit(problems.length ? 1 : 0);
