/**
 * CLI habits users bring from other servers: --version, --port/--host/--redis on serve/api/worker, help
 * that lists the variables read with their defaults, and `embed` resolving the model and limits as the
 * service does.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRedis } from '@embedpool/core/queue';
import { freePort, PARITY_MODEL, parityImages, REPO_ROOT } from '@embedpool/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { jsonLines, runCli } from './run-cli';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `t-cliflags-${process.pid}`;

describe('embedpool CLI flags', { timeout: 120_000 }, () => {
  afterAll(async () => {
    const redis = createRedis(REDIS_URL, 'consumer');
    const found = await redis.keys(`${PREFIX}:*`);
    if (found.length > 0) await redis.del(...found);
    redis.disconnect();
  });

  it('--version prints the version in package.json', async () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = await runCli([flag]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${pkg.version}\n`);
    }
  });

  it('serve, api and worker --help list their flags and the variables they read with defaults', async () => {
    const help = async (cmd: string) => {
      const r = await runCli([cmd, '--help']);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };
    const serve = await help('serve');
    for (const flag of ['--port <port>', '--host <address>', '--model <model.onnx>', '--redis <url>']) {
      expect(serve).toContain(flag);
    }
    expect(serve).toMatch(/^ {2}PORT +8080$/m);
    expect(serve).toMatch(/^ {2}REDIS_URL +redis:\/\/127\.0\.0\.1:6379$/m);
    expect(serve).toMatch(/^ {2}MAX_BATCH_SIZE +16$/m);
    const api = await help('api');
    expect(api).toMatch(/--port <port> +listen port \(sets PORT\)/);
    expect(api).toMatch(/^ {2}HOST +127\.0\.0\.1$/m);
    expect(api).not.toMatch(/MAX_BATCH_SIZE/);
    const worker = await help('worker');
    expect(worker).toMatch(/--port <port> +listen port \(sets WORKER_METRICS_PORT\)/);
    expect(worker).toMatch(/^ {2}MODEL_PATH +\(unset\)$/m);
  });

  it('api --port --host --redis take effect over the environment', async () => {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [
        join(REPO_ROOT, 'bin/embedpool.js'),
        'api',
        '--port',
        String(port),
        '--host',
        '127.0.0.1',
        '--redis',
        REDIS_URL,
      ],
      {
        cwd: REPO_ROOT,
        // The environment says otherwise: the flags must win.
        env: {
          PATH: process.env.PATH ?? '',
          HOME: '/tmp',
          PORT: '1',
          HOST: '127.0.0.2',
          REDIS_URL: 'redis://127.0.0.1:1',
          QUEUE_PREFIX: PREFIX,
          LOG_FORMAT: 'json',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    try {
      let out = '';
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (b: Buffer) => {
          out += b.toString('utf8');
          const m = /"url":"(http:\/\/[^"]+)","msg":"embedpool API listening"/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.on('close', (code) => reject(new Error(`exited ${code}: ${out}`)));
      });
      expect(url).toBe(`http://127.0.0.1:${port}`);
      const ready = await fetch(`${url}/healthz`);
      expect(ready.status).toBe(200);
      // Redis from --redis: the API can reach it (a closed port would answer 503 here).
      const models = await fetch(`${url}/v1/models`);
      expect(models.status).toBe(200);
    } finally {
      child.kill('SIGTERM');
    }
  });

  it('embed takes the model from MODEL_PATH and its size limit from MAX_IMAGE_BYTES, as the service', async () => {
    const image = parityImages().find((i) => i.reference)!;
    const size = readFileSync(image.path).length;
    const r = await runCli(['embed', image.path], {
      MODEL_PATH: PARITY_MODEL,
      MAX_IMAGE_BYTES: String(size - 1),
    });
    expect(r.code, r.stderr).toBe(2);
    const [line] = jsonLines<{ error?: { code: string } }>(r.stdout);
    expect(line!.error!.code).toBe('IMAGE_TOO_LARGE');
    // The flag still wins over the variable.
    const ok = await runCli(['embed', image.path, '--max-bytes', String(size)], {
      MODEL_PATH: PARITY_MODEL,
      MAX_IMAGE_BYTES: String(size - 1),
    });
    expect(ok.code, ok.stderr).toBe(0);
    expect(jsonLines<{ image_features: number[] }>(ok.stdout)[0]!.image_features).toHaveLength(192);
  });

  it('embed without --model or a cached model says how to get one (no random weights)', async () => {
    const r = await runCli(['embed', parityImages()[0]!.path], {
      EMBEDPOOL_CACHE_DIR: join(REPO_ROOT, 'node_modules/.cache/embedpool-empty-cache'),
      MODEL_FETCH: 'false',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/MODEL_NOT_FOUND/);
    expect(r.stderr).toMatch(/model fetch/);
    expect(r.stdout).toBe('');
  });
});
