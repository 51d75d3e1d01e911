/**
 * API keys: who may call, who may see which job, what stays open, and the API refusing to start where
 * it would be reachable without authentication. Keys are configured as SHA-256 hashes only.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hashKey, isLoopbackHost, newKey, resolveAuth, startApi } from '@embedpool/api';
import { loadConfig } from '@embedpool/core/config';
import { REPO_ROOT } from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, testConfig } from '../support/stack';
import { call, goodImage, guardNetwork, pollJob, scoreBody } from './support';

guardNetwork();

const run = promisify(execFile);
const alice = newKey();
const aliceNext = newKey(); // rotation: a second key under the same name
const bob = newKey();
const METRICS_TOKEN = 'metrics-token-0123456789';
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const good = readFileSync(goodImage.path).toString('base64');

describe('API keys', () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  let url: string;
  beforeAll(async () => {
    stack = await startStack(
      testConfig({
        API_KEYS: `alice:${hashKey(alice)},bob:${hashKey(bob)},alice:${hashKey(aliceNext)}`,
        METRICS_TOKEN,
        CALLBACK_SECRET: 'callback-secret-0123456789',
      }),
    );
    url = stack.api.url;
  });
  afterAll(() => stack?.stop());

  it.each([
    ['POST', '/score', scoreBody([good])],
    ['POST', '/v1/jobs', { images: [{ base64: good }] }],
    ['GET', '/v1/jobs/00000000-0000-4000-8000-000000000000', undefined],
    ['POST', '/v1/embeddings', { model: 'dinov2', input: [good] }],
  ])('%s %s without credentials: 401 JSON with WWW-Authenticate', async (method, path, body) => {
    const res = await call(`${url}${path}`, { method, body });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="embedpool"/);
    if (path === '/v1/embeddings') {
      expect(res.json.error).toMatchObject({ code: 'UNAUTHORIZED', type: 'authentication_error' });
      expect(res.headers.get('x-should-retry')).toBe('false');
    } else {
      expect(res.json.error.code).toBe('UNAUTHORIZED');
    }
  });

  it.each([
    ['a wrong key', { authorization: `Bearer ${newKey()}` }],
    ['a wrong api-key header', { 'api-key': newKey() }],
    ['a hash instead of the key', { authorization: `Bearer ${hashKey(alice)}` }],
    ['basic auth', { authorization: `Basic ${Buffer.from(`x:${alice}`).toString('base64')}` }],
    ['an empty bearer', { authorization: 'Bearer ' }],
    ['a key with a suffix', { authorization: `Bearer ${alice}x` }],
  ])('%s: 401 invalid_token', async (_name, headers) => {
    const res = await call(`${url}/score`, { body: scoreBody([good]), headers });
    expect(res.status).toBe(401);
    expect(res.json.error.code).toBe('UNAUTHORIZED');
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="embedpool", error="invalid_token"');
  });

  it('accepts a key as Bearer and as api-key (the Azure header), and every key of a rotated name', async () => {
    for (const headers of [bearer(alice), { 'api-key': alice }, bearer(aliceNext), bearer(bob)]) {
      const res = await call(`${url}/score`, { body: scoreBody([good]), headers });
      expect(res.status).toBe(200);
      expect(res.json[0].image_features.length).toBeGreaterThan(0);
    }
  });

  it('hides a job from every other key: status, result, cancel and redrive answer 404 like a missing job', async () => {
    const submitted = await call(`${url}/v1/jobs`, {
      body: { images: [{ base64: good }] },
      headers: bearer(alice),
    });
    expect(submitted.status).toBe(202);
    const id = submitted.json.id as string;
    const done = await pollJob(url, id, bearer(alice));
    expect(done.state).toBe('completed');

    const missing = await call(`${url}/v1/jobs/00000000-0000-4000-8000-000000000000`, {
      headers: bearer(bob),
    });
    expect(missing.status).toBe(404);
    for (const [method, path] of [
      ['GET', `/v1/jobs/${id}`],
      ['GET', `/v1/jobs/${id}/result`],
      ['DELETE', `/v1/jobs/${id}`],
      ['POST', `/v1/jobs/${id}/callback/redrive`],
    ] as const) {
      const res = await call(`${url}${path}`, { method, headers: bearer(bob) });
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.json.error.code).toBe('NOT_FOUND');
      expect(res.json.error.message).toBe(`no job ${id}`);
    }
    // The owner, with either of its keys, still sees it whole.
    for (const key of [alice, aliceNext]) {
      expect((await call(`${url}/v1/jobs/${id}`, { headers: bearer(key) })).json.state).toBe('completed');
      const result = await call(`${url}/v1/jobs/${id}/result`, { headers: bearer(key) });
      expect(result.status).toBe(200);
      expect(result.json.items[0].image_features.length).toBeGreaterThan(0);
    }
  });

  it('keeps Idempotency-Keys apart per owner', async () => {
    const body = { images: [{ base64: good }] };
    const headers = { 'idempotency-key': `same-${Date.now()}` };
    const a = await call(`${url}/v1/jobs`, { body, headers: { ...headers, ...bearer(alice) } });
    const b = await call(`${url}/v1/jobs`, { body, headers: { ...headers, ...bearer(bob) } });
    const a2 = await call(`${url}/v1/jobs`, { body, headers: { ...headers, ...bearer(aliceNext) } });
    expect([a.status, b.status, a2.status]).toEqual([202, 202, 200]);
    expect(b.json.id).not.toBe(a.json.id);
    expect(a2.json.id).toBe(a.json.id);
  });

  it('leaves /healthz, /readyz and /openapi.json open', async () => {
    expect((await call(`${url}/healthz`)).status).toBe(200);
    expect((await call(`${url}/readyz`)).status).toBe(200);
    expect([200, 404]).toContain((await call(`${url}/openapi.json`)).status);
    expect((await call(`${url}/`)).status).toBe(200);
    expect((await call(`${url}/docs`)).status).toBe(200);
  });

  it('guards /v1/models like the other /v1 routes, answering in OpenAI shape', async () => {
    const none = await call(`${url}/v1/models`);
    expect(none.status).toBe(401);
    expect(none.json.error.type).toBe('authentication_error');
    const ok = await call(`${url}/v1/models`, { headers: bearer(alice) });
    expect(ok.status).toBe(200);
    expect(ok.json.object).toBe('list');
  });

  it('guards /metrics with METRICS_TOKEN alone (an API key is not enough)', async () => {
    const none = await call(`${url}/metrics`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await call(`${url}/metrics`, { headers: bearer(alice) })).status).toBe(401);
    const ok = await fetch(`${url}/metrics`, { headers: bearer(METRICS_TOKEN) });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('embedpool_http_requests_total');
  });
});

describe('/metrics without METRICS_TOKEN follows the API auth', () => {
  it('needs any valid API key when keys are on', async () => {
    const stack = await startStack(testConfig({ API_KEYS: `alice:${hashKey(alice)}` }), { worker: false });
    try {
      expect((await call(`${stack.api.url}/metrics`)).status).toBe(401);
      expect((await fetch(`${stack.api.url}/metrics`, { headers: bearer(alice) })).status).toBe(200);
    } finally {
      await stack.stop();
    }
  });
});

describe('secure by default: where the API may start without auth', () => {
  // 192.0.2.1 (TEST-NET-1) is never an address of this machine: were the guard broken, listen() would
  // fail with EADDRNOTAVAIL rather than expose a port, and the message check below would catch it.
  const exposed = { HOST: '192.0.2.1' };

  it('refuses to start on a non-loopback HOST with no credentials, saying what to set', async () => {
    await expect(startApi({ config: testConfig(exposed) })).rejects.toThrow(
      /refusing to start: HOST=192\.0\.2\.1 .*API_KEYS.*AUTH=none/,
    );
  });

  it('`embedpool api` exits 1 with that message as one plain sentence, no stack', async () => {
    const child = run(process.execPath, [join(REPO_ROOT, 'bin/embedpool.js'), 'api'], {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: '/tmp',
        ...exposed,
        REDIS_URL: 'redis://127.0.0.1:1',
        LOG_LEVEL: 'info',
      },
      timeout: 30_000,
    });
    const err = (await child.then(
      () => undefined,
      (e: unknown) => e,
    )) as { code: number; stdout: string; stderr: string } | undefined;
    expect(err?.code).toBe(1);
    expect(err?.stderr).toMatch(/^embedpool api: refusing to start: HOST=192\.0\.2\.1 [^\n]*\n$/);
    expect(err?.stderr).not.toMatch(/^\s+at /m);
  });

  it.each([
    [{ AUTH: 'keys' }, /AUTH=keys needs API_KEYS/],
    [{ AUTH: 'entra' }, /AUTH=entra needs AUTH_JWT_ISSUER, AUTH_JWT_AUDIENCE, AUTH_JWT_JWKS_URL/],
    [
      {
        AUTH_JWT_ISSUER: 'https://login.microsoftonline.com/t/v2.0',
        AUTH_JWT_AUDIENCE: 'api://embedpool',
        AUTH_JWT_JWKS_URL: 'http://keys.example.com/keys',
      },
      /AUTH_JWT_JWKS_URL must be https/,
    ],
  ])('refuses an incomplete auth config %j', (env, message) => {
    expect(() => resolveAuth(testConfig(env as Record<string, string>))).toThrow(message);
  });

  it('refuses API_KEYS entries that are not name:sha256hex (a raw key pasted by mistake)', () => {
    expect(() => loadConfig({ API_KEYS: `alice:${alice}` })).toThrow(/API_KEYS.*name:<64 hex digits/);
  });

  it('decides the mode from what is configured', () => {
    expect(resolveAuth(testConfig({})).mode).toBe('none');
    expect(resolveAuth(testConfig({ ...exposed, AUTH: 'none' })).mode).toBe('none');
    expect(resolveAuth(testConfig({ ...exposed, API_KEYS: `a:${hashKey(alice)}` })).mode).toBe('keys');
    expect(
      resolveAuth(
        testConfig({
          API_KEYS: `a:${hashKey(alice)}`,
          AUTH_JWT_ISSUER: 'https://login.microsoftonline.com/t/v2.0',
          AUTH_JWT_AUDIENCE: 'api://embedpool',
          AUTH_JWT_JWKS_URL: 'https://login.microsoftonline.com/t/discovery/v2.0/keys',
        }),
      ).mode,
    ).toBe('keys+entra');
  });

  it.each([
    ['127.0.0.1', true],
    ['127.10.0.3', true],
    ['localhost', true],
    ['::1', true],
    ['[::1]', true],
    ['0:0:0:0:0:0:0:1', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['10.0.0.4', false],
    ['192.0.2.1', false],
    ['::ffff:10.0.0.1', false],
    ['fe80::1%eth0', false],
    ['api.internal', false],
  ])('HOST=%s is loopback: %s', (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });

  it('`embedpool key hash` gives the same digest as sha256sum, and `key new` a usable entry', async () => {
    const key = 'ep_example-key';
    const cli = join(REPO_ROOT, 'bin/embedpool.js');
    const hashed = execFile(process.execPath, [cli, 'key', 'hash', '--name', 'carol'], { timeout: 30_000 });
    hashed.stdin!.end(`${key}\n`);
    const out = await new Promise<string>((resolve, reject) => {
      let text = '';
      hashed.stdout!.on('data', (d: Buffer) => {
        text += d.toString();
      });
      hashed.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`exit ${code}`))));
    });
    expect(out.trim()).toBe(`carol:${hashKey(key)}`);
    const { stdout } = await run(process.execPath, [cli, 'key', 'new', '--name', 'dave'], {
      timeout: 30_000,
    });
    const made = /key: (\S+)\nAPI_KEYS entry: (dave:[0-9a-f]{64})/.exec(stdout);
    expect(made).not.toBeNull();
    expect(loadConfig({ API_KEYS: made![2]! }).API_KEYS).toEqual([
      { name: 'dave', sha256: hashKey(made![1]!) },
    ]);
  });
});
