/**
 * The secret recipes work as written (issue 13, item 6): `embedpool key new --format env|json` print what a
 * script needs, and the `kubectl create secret` recipe of infra/README.md (the same lines as the comment in
 * infra/k8s/secret.example.yaml) runs as it stands, with `kubectl` and `terraform` replaced by recorders on
 * PATH and the real `embedpool` CLI. The Secret it would create is fed to the config parser, holds every key
 * the Deployments reference, and its API_KEYS entry authenticates the key the recipe hands out.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hashKey } from '@embedpool/api';
import { envSchema } from '@embedpool/core/config';
import { REPO_ROOT } from '@embedpool/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli/run-cli';

const execFileAsync = promisify(execFile);
const read = (rel: string) => readFileSync(join(REPO_ROOT, rel), 'utf8');
const ENTRY_RE = /^([A-Za-z0-9._-]+):([0-9a-f]{64})$/;

describe('embedpool key new --format', () => {
  it('env: two assignments a shell can eval; the entry is the hash of the key', async () => {
    const r = await runCli(['key', 'new', '--name', 'team-a', '--format', 'env']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    const key = /^EMBEDPOOL_API_KEY=(ep_[A-Za-z0-9_-]+)$/.exec(lines[0]!)?.[1];
    const entry = /^API_KEYS=(.+)$/.exec(lines[1]!)?.[1];
    expect(key).toBeDefined();
    expect(entry).toBe(`team-a:${hashKey(key!)}`);
    expect(envSchema.parse({ API_KEYS: entry }).API_KEYS).toEqual([
      { name: 'team-a', sha256: hashKey(key!) },
    ]);
    // The key is for the client only: stdout has it once, stderr tells the user, nothing else echoes it.
    expect(r.stderr).not.toContain(key);
  });

  it('json: name, key and the API_KEYS entry', async () => {
    const r = await runCli(['key', 'new', '--name', 'ci', '--format', 'json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { name: string; key: string; apiKeysEntry: string };
    expect(out.name).toBe('ci');
    expect(out.apiKeysEntry).toBe(`ci:${hashKey(out.key)}`);
    expect(envSchema.safeParse({ API_KEYS: out.apiKeysEntry }).success).toBe(true);
  });

  it('refuses an unknown format, naming the choices', async () => {
    const r = await runCli(['key', 'new', '--format', 'yaml']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/text, env, json/);
  });
});

/** The shell lines of the README block that creates embedpool-secrets. */
function readmeRecipe(): string {
  const blocks = [...read('infra/README.md').matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const recipe = blocks.filter((b) => b.includes('create secret generic embedpool-secrets'));
  expect(recipe, 'one README block creates embedpool-secrets').toHaveLength(1);
  return recipe[0]!;
}

/** The same recipe as written in the comment of secret.example.yaml (`#   ` lines). */
function exampleRecipe(): string {
  return read('infra/k8s/secret.example.yaml')
    .split('\n')
    .filter((l) => l.startsWith('#   '))
    .map((l) => l.slice(4))
    .join('\n');
}

const TF_OUTPUTS: Record<string, string> = {
  redis_url: 'rediss://:k3y-from-terraform@redis-embedpool-abc123.westeurope.redis.azure.net:10000',
  redis_hostname: 'redis-embedpool-abc123.westeurope.redis.azure.net',
  redis_port: '10000',
  redis_access_key: 'k3y-from-terraform',
  blob_endpoint: 'https://stembedpoolabc123.blob.core.windows.net/',
  worker_identity_client_id: '11111111-2222-3333-4444-555555555555',
  callback_secret: 'Cb0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ',
};

describe('the kubectl create secret recipe', () => {
  const dir = mkdtempSync(join(tmpdir(), 'embedpool-recipe-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const bin = join(dir, 'bin');
  const record = join(dir, 'kubectl.args');
  const stub = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!/usr/bin/env bash\nset -euo pipefail\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };

  async function run(recipe: string) {
    rmSync(bin, { recursive: true, force: true });
    mkdirSync(bin, { recursive: true });
    // kubectl records its arguments NUL-separated; terraform answers `-chdir=infra/azure output -raw NAME`.
    stub('kubectl', `printf '%s\\0' "$@" > ${JSON.stringify(record)}`);
    stub(
      'terraform',
      `[ "$1" = "-chdir=infra/azure" ] && [ "$2" = output ] && [ "$3" = -raw ] || { echo "unexpected: $*" >&2; exit 2; }\n` +
        `case "$4" in\n${Object.entries(TF_OUTPUTS)
          .map(([k, v]) => `  ${k}) printf '%s' '${v}' ;;`)
          .join('\n')}\n  *) echo "no output $4" >&2; exit 1 ;;\nesac`,
    );
    stub(
      'embedpool',
      `exec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(REPO_ROOT, 'bin/embedpool.js'))} "$@"`,
    );
    const script = `set -euo pipefail\n${recipe}\nprintf '%s' "$EMBEDPOOL_API_KEY" > ${JSON.stringify(join(dir, 'key'))}\n`;
    const { stdout } = await execFileAsync('bash', ['-c', script], {
      cwd: REPO_ROOT,
      env: { PATH: `${bin}:${process.env.PATH ?? ''}`, HOME: dir, LOG_LEVEL: 'warn' },
      timeout: 60_000,
    });
    const args = readFileSync(record, 'utf8').split('\0').slice(0, -1);
    const literals = Object.fromEntries(
      args
        .filter((a) => a.startsWith('--from-literal='))
        .map((a) => a.slice('--from-literal='.length))
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
    return { args, literals, stdout, key: readFileSync(join(dir, 'key'), 'utf8') };
  }

  it('README and secret.example.yaml give the same commands', () => {
    expect(exampleRecipe().trim()).toBe(readmeRecipe().trim());
  });

  it('runs as written; the Secret parses as configuration and covers every referenced key', async () => {
    const { args, literals, stdout, key } = await run(readmeRecipe());
    expect(args.slice(0, 6)).toEqual(['-n', 'embedpool', 'create', 'secret', 'generic', 'embedpool-secrets']);

    // Every key the manifests read from the Secret is created.
    const manifests = ['api.yaml', 'worker-cpu.yaml', 'worker-gpu.yaml', 'keda.yaml', 'model-cache.yaml']
      .map((f) => read(`infra/k8s/${f}`))
      .join('\n');
    const refs = new Set([...manifests.matchAll(/name: embedpool-secrets\s+key: (\S+)/g)].map((m) => m[1]!));
    expect(refs.size).toBeGreaterThan(8);
    expect([...refs].filter((k) => !(k in literals))).toEqual([]);

    // The processes' variables parse (empty counts as unset, as loadConfig reads them).
    const known = new Set(Object.keys(envSchema.shape));
    const processEnv = Object.fromEntries(
      Object.entries(literals).filter(([k, v]) => known.has(k) && v !== ''),
    );
    const parsed = envSchema.safeParse(processEnv);
    expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
    const config = parsed.data!;
    expect(config.API_KEYS).toEqual([{ name: 'team-a', sha256: hashKey(key) }]);
    expect(literals.API_KEYS).toMatch(ENTRY_RE);
    expect(config.METRICS_TOKEN).toMatch(/^[0-9a-f]{48}$/);
    expect(config.DASHBOARD_TOKEN).toMatch(/^[0-9a-f]{48}$/);
    expect(config.METRICS_TOKEN).not.toBe(config.DASHBOARD_TOKEN);
    expect(config.CALLBACK_SECRET).toBe(TF_OUTPUTS.callback_secret);
    expect(config.REDIS_URL).toBe(TF_OUTPUTS.redis_url);
    expect(config.BLOB_ACCOUNT_URL).toBe(TF_OUTPUTS.blob_endpoint);
    expect(config.AZURE_CLIENT_ID).toBe(TF_OUTPUTS.worker_identity_client_id);
    // KEDA's address is the Redis URL's host:port.
    expect(literals['redis-address']).toBe(new URL(TF_OUTPUTS.redis_url!).host);
    expect(literals['redis-password']).toBe(TF_OUTPUTS.redis_access_key);
    // The key is handed out once, on stdout, and is not in the Secret.
    expect(stdout).toContain(key);
    expect(Object.values(literals)).not.toContain(key);
  });
});
