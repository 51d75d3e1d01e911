/**
 * docker-compose.yml as local processes, without a container engine: each service the fleet needs (redis,
 * azurite, api, worker) starts with exactly the environment and command line the file declares, after the
 * mapping a container network does for you:
 *
 * - `${VAR:-default}` interpolated from `userEnv` (what a user puts in `.env`);
 * - service host names (`redis:6379`, `azurite:10000`) to loopback ports of their own, listening addresses
 *   (`0.0.0.0`) to 127.0.0.1, published/listen ports (`PORT`, `WORKER_METRICS_PORT`) to free ports;
 * - images to the local checkout: `embedpool/*` runs its Dockerfile's ENTRYPOINT + CMD, on JavaScript compiled
 *   as the image build compiles it (`scripts/build.mjs` into `.cache/fleet-smoke/dist`),
 *   `redis` the machine's `redis-server`, `azurite` the npm package's `azurite-blob`;
 * - volume paths to temporary directories; where the file's model comes from a volume filled by
 *   `model-init` (a download), MODEL_PATH points at the repository's small parity model instead, and
 *   MODEL_ID names it (model-init's fetch records the id of what it downloaded beside the model).
 *
 * Nothing else is added to a process's environment but PATH and HOME.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, PARITY_MODEL, REPO_ROOT } from '@embedpool/testkit';
import { parse as parseYaml } from 'yaml';

type Obj = Record<string, unknown>;

/** The id the smoke's stand-in model is reported under. */
export const PARITY_MODEL_ID = 'dinov2-parity-fixture';

/** Compose variable interpolation: `$$`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`. */
export function interpolate(value: string, env: Record<string, string>): string {
  return value.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (m, name?: string, op?: string, arg?: string, bare?: string) => {
      if (m === '$$') return '$';
      const key = (name ?? bare)!;
      const set = key in env;
      const val = env[key] ?? '';
      if (op === ':-') return set && val !== '' ? val : (arg ?? '');
      if (op === '-') return set ? val : (arg ?? '');
      if (op === ':+') return set && val !== '' ? (arg ?? '') : '';
      if (op === '+') return set ? (arg ?? '') : '';
      if (op?.endsWith('?') && (!set || (op === ':?' && val === ''))) throw new Error(`${key}: ${arg}`);
      return val;
    },
  );
}

export interface ComposeService {
  image: string;
  command: string[] | undefined;
  environment: Record<string, string>;
  volumes: string[];
  dockerfile: string | undefined;
}

/** The services of docker-compose.yml as compose sees them with `userEnv` as its environment. */
export function readComposeServices(
  text: string,
  userEnv: Record<string, string>,
): Record<string, ComposeService> {
  const doc = parseYaml(text, { merge: true }) as Obj;
  const out: Record<string, ComposeService> = {};
  for (const [name, raw] of Object.entries(doc.services as Record<string, Obj>)) {
    const env = Object.fromEntries(
      Object.entries((raw.environment ?? {}) as Obj).map(([k, v]) => [
        k,
        interpolate(v === null || v === undefined ? '' : String(v), userEnv),
      ]),
    );
    out[name] = {
      image: interpolate(String(raw.image ?? ''), userEnv),
      command: Array.isArray(raw.command)
        ? raw.command.map((c) => interpolate(String(c), userEnv))
        : undefined,
      environment: env,
      volumes: ((raw.volumes ?? []) as unknown[]).map(String),
      dockerfile: (raw.build as Obj | undefined)?.dockerfile as string | undefined,
    };
  }
  return out;
}

/**
 * ENTRYPOINT (+ CMD, if any) of a Dockerfile (exec form): node's flags, the compiled entry point the image
 * runs (`node --flag dist/api.mjs`, `node --flag dist/worker.mjs`) and its arguments.
 */
function dockerRun(dockerfile: string): { flags: string[]; script: string; args: string[] } {
  const text = readFileSync(join(REPO_ROOT, dockerfile), 'utf8');
  const cmd = [...text.matchAll(/^CMD\s+(\[.*\])\s*$/gm)].at(-1)?.[1];
  const entry = [...text.matchAll(/^ENTRYPOINT\s+(\[.*\])\s*$/gm)].at(-1)?.[1];
  if (!entry) throw new Error(`${dockerfile}: no exec-form ENTRYPOINT`);
  const [node, ...rest] = JSON.parse(entry) as string[];
  // node's own flags come before the script.
  const first = rest.findIndex((a) => !a.startsWith('--'));
  const flags = first < 0 ? rest : rest.slice(0, first);
  const [script, ...extra] = rest.slice(flags.length);
  if (node !== 'node' || !script || !/^dist\/(api|worker|cli)\.mjs$/.test(script) || extra.length > 0) {
    throw new Error(`${dockerfile}: ENTRYPOINT ${entry} is not a compiled embedpool entry point`);
  }
  return { flags, script, args: cmd ? (JSON.parse(cmd) as string[]) : [] };
}

/**
 * The images run compiled JavaScript: build it as their build stage does (without the type check, which
 * `npm test` runs anyway) into a folder inside the checkout, so packages resolve from its node_modules.
 */
async function buildImageDist(): Promise<string> {
  const root = join(REPO_ROOT, '.cache/fleet-smoke');
  const { buildDist } = (await import('../../scripts/build.mjs')) as {
    buildDist(o: { outdir: string; typecheck: boolean }): Promise<unknown>;
  };
  await buildDist({ outdir: join(root, 'dist'), typecheck: false });
  return root;
}

/** `redis:6379` -> its loopback port; filled on demand as the environments name hosts. */
class Network {
  readonly ports = new Map<string, number>();
  async port(host: string, port: number): Promise<number> {
    const key = `${host}:${port}`;
    if (!this.ports.has(key)) this.ports.set(key, await freePort());
    return this.ports.get(key)!;
  }
}

class Proc {
  output = '';
  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    const keep = (d: Buffer) => {
      this.output = (this.output + d.toString()).slice(-20_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }
  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
    await gone;
    clearTimeout(timer);
  }
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

function answersHttp(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(0));
    req.end();
  });
}

/** Polls `check` every 100 ms until it is true; fails naming `what` (and the process's output) at the deadline. */
async function until(what: string, proc: Proc, check: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exited) throw new Error(`${proc.name} exited before ${what}:\n${proc.output}`);
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms:\n${proc.output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface Fleet {
  /** The API's base URL on loopback. */
  apiUrl: string;
  /** The worker's metrics server. */
  workerMetricsUrl: string;
  /** Each started embedpool service's environment, exactly as its process got it. */
  env: Record<string, Record<string, string>>;
  /** Loopback port of each `service:port` the environments name. */
  network: Map<string, number>;
  procs: Record<string, { output: string; exited: boolean }>;
  stop(): Promise<void>;
}

export interface FleetOptions {
  /** What the user's shell or `.env` holds. */
  userEnv: Record<string, string>;
  composeFile?: string;
  /** How long the worker and the API may take to become ready (default 180 s: a model load on a busy machine). */
  readyTimeoutMs?: number;
}

export async function startFleet(opts: FleetOptions): Promise<Fleet> {
  const services = readComposeServices(
    readFileSync(join(REPO_ROOT, opts.composeFile ?? 'docker-compose.yml'), 'utf8'),
    opts.userEnv,
  );
  const dir = mkdtempSync(join(tmpdir(), 'embedpool-fleet-'));
  const net = new Network();
  const procs: Proc[] = [];
  const readyMs = opts.readyTimeoutMs ?? 180_000;
  const base = { PATH: process.env.PATH ?? '', HOME: dir };
  const spawnProc = (name: string, cmd: string, args: string[], env: Record<string, string>) => {
    const child = spawn(cmd, args, {
      cwd: REPO_ROOT,
      env: { ...base, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(child);
    child.once('exit', () => running.delete(child));
    const p = new Proc(name, child);
    procs.push(p);
    return p;
  };
  /** A service's volume mount points, each mapped to a fresh directory. */
  const volumeDirs = (name: string): Map<string, string> =>
    new Map(
      services[name]!.volumes.map((v, i) => {
        const target = v.split(':')[1]!;
        return [target, mkdtempSync(join(dir, `${name}-${i}-`))];
      }),
    );
  const mapEnv = async (name: string): Promise<Record<string, string>> => {
    const svc = services[name]!;
    const volumes = volumeDirs(name);
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(svc.environment)) {
      let value = v;
      for (const m of v.matchAll(/\/\/([a-z][a-z0-9-]*):(\d+)/g)) {
        if (!(m[1]! in services)) continue;
        value = value.replace(`//${m[1]}:${m[2]}`, `//127.0.0.1:${await net.port(m[1]!, Number(m[2]))}`);
      }
      if (value === '0.0.0.0') value = '127.0.0.1';
      if (volumes.has(value)) value = volumes.get(value)!;
      out[k] = value;
    }
    if (out.PORT) out.PORT = String(await net.port(name, Number(out.PORT)));
    if (out.WORKER_METRICS_PORT) {
      out.WORKER_METRICS_PORT = String(await net.port(name, Number(out.WORKER_METRICS_PORT)));
    }
    // The model lives in a volume filled by model-init (a download, which records the model's id beside it):
    // the parity model stands in for it, with its id.
    if (out.EMBEDPOOL_CACHE_DIR && out.MODEL_FETCH === 'false' && !out.MODEL_PATH) {
      out.MODEL_PATH = PARITY_MODEL;
      out.MODEL_ID = PARITY_MODEL_ID;
    }
    return out;
  };

  try {
    // redis: the file's command line, listening on its loopback port, its data volume in a temp dir.
    const redis = services.redis!;
    const redisArgs = (redis.command ?? ['redis-server']).slice(1);
    const redisVolumes = volumeDirs('redis');
    const rArgs = redisArgs.map((a) => redisVolumes.get(a) ?? a);
    const redisPort = await net.port('redis', 6379);
    const r = spawnProc(
      'redis',
      'redis-server',
      [...rArgs, '--port', String(redisPort), '--bind', '127.0.0.1'],
      {},
    );
    await until('redis ready', r, async () => r.output.includes('Ready to accept connections'), 30_000);

    // azurite: the file's command line, from the npm package, telemetry off (loopback traffic only).
    const az = services.azurite!;
    const azPort = await net.port('azurite', 10000);
    const azVolumes = volumeDirs('azurite');
    const azArgs = (az.command ?? []).slice(1).map((a, i, all) => {
      if (all[i - 1] === '--blobHost') return '127.0.0.1';
      if (all[i - 1] === '--blobPort') return String(azPort);
      return azVolumes.get(a) ?? a;
    });
    if (!azArgs.includes('--disableTelemetry')) azArgs.push('--disableTelemetry');
    const azBin = join(REPO_ROOT, 'node_modules/.bin', az.command?.[0] ?? 'azurite-blob');
    const a = spawnProc('azurite', azBin, azArgs, {});
    await until(
      'azurite answers',
      a,
      async () => (await answersHttp(azPort, '/devstoreaccount1?comp=list')) > 0,
      30_000,
    );

    // api and worker: the local checkout runs what each image's Dockerfile runs.
    const env: Record<string, Record<string, string>> = {};
    const started: Record<string, Proc> = {};
    let distRoot: string | undefined;
    for (const name of ['worker', 'api']) {
      const svc = services[name]!;
      if (!/^embedpool\//.test(svc.image) || !svc.dockerfile)
        throw new Error(`${name}: not an embedpool image`);
      env[name] = await mapEnv(name);
      const run = dockerRun(svc.dockerfile);
      distRoot ??= await buildImageDist();
      started[name] = spawnProc(
        name,
        process.execPath,
        [...run.flags, join(distRoot, run.script), ...(svc.command ?? run.args)],
        env[name]!,
      );
    }
    const apiPort = Number(env.api!.PORT);
    const workerPort = Number(env.worker!.WORKER_METRICS_PORT);
    await until(
      'worker /healthz',
      started.worker!,
      async () => (await answersHttp(workerPort, '/healthz')) === 200,
      readyMs,
    );
    await until(
      'api /readyz',
      started.api!,
      async () => (await answersHttp(apiPort, '/readyz')) === 200,
      readyMs,
    );

    return {
      apiUrl: `http://127.0.0.1:${apiPort}`,
      workerMetricsUrl: `http://127.0.0.1:${workerPort}`,
      env,
      network: net.ports,
      procs: Object.fromEntries(procs.map((p) => [p.name, p])),
      async stop() {
        // Embedpool first (they drain against Redis), then storage and Redis.
        for (const p of [...procs].reverse()) await p.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    for (const p of [...procs].reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
