/**
 * The API image's dependency list: the lockfile closure scripts/deps-closure.mjs prunes the image to holds
 * no onnxruntime, sharp or TypeScript tooling; and the compiled API (dist/api.mjs from scripts/build.mjs)
 * really starts and serves from exactly that set of packages, as in the image.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRedis } from '@embedpool/core/queue';
import { REPO_ROOT } from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDist } from '../../scripts/build.mjs';
import { runtimeClosure } from '../../scripts/deps-closure.mjs';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `t-apiimage-${process.pid}`;
const names = (paths: string[]) => paths.map((p) => p.slice('node_modules/'.length));
const HEAVY =
  /^(onnxruntime-node|onnxruntime-common|sharp|@img\/.*|typescript|tsx|esbuild|@esbuild\/.*|vitest)$/;

describe('the API image', { timeout: 120_000 }, () => {
  const api = names(runtimeClosure('apps/api'));
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'embedpool-api-image-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
    const redis = createRedis(REDIS_URL, 'consumer');
    const found = await redis.keys(`${PREFIX}:*`);
    if (found.length > 0) await redis.del(...found);
    redis.disconnect();
  });

  it('depends on no onnxruntime, sharp or TypeScript tooling (the worker does, so the check can fail)', () => {
    expect(api.filter((n) => HEAVY.test(n))).toEqual([]);
    for (const needed of [
      'express',
      'bullmq',
      'ioredis',
      'pino',
      'pino-pretty',
      'swagger-ui-dist',
      '@opentelemetry/api',
    ]) {
      expect(api, needed).toContain(needed);
    }
    const worker = names(runtimeClosure('apps/worker'));
    expect(worker).toContain('onnxruntime-node');
    expect(worker).toContain('sharp');
    // The CLI's runtime (worker images) carries no TypeScript tooling either.
    expect(names(runtimeClosure('.')).filter((n) => /^(typescript|tsx|esbuild|vitest)$/.test(n))).toEqual([]);
  });

  it('the compiled API starts and serves from exactly that dependency list', async () => {
    await buildDist({ outdir: join(dir, 'dist'), typecheck: false });
    copyFileSync(join(REPO_ROOT, 'package.json'), join(dir, 'package.json'));
    // node_modules as the pruned image has it: the API's closure and nothing else (workspaces are bundled).
    for (const name of new Set(api.map((p) => p.split('/node_modules/')[0]!))) {
      if (name.startsWith('@embedpool/')) continue;
      mkdirSync(dirname(join(dir, 'node_modules', name)), { recursive: true });
      symlinkSync(join(REPO_ROOT, 'node_modules', name), join(dir, 'node_modules', name));
    }
    const child = spawn(process.execPath, [join(dir, 'dist/api.mjs')], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: '/tmp',
        HOST: '127.0.0.1',
        PORT: '0',
        REDIS_URL,
        QUEUE_PREFIX: PREFIX,
        LOG_FORMAT: 'json',
        NODE_ENV: 'production',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      const url = await new Promise<string>((resolve, reject) => {
        const onData = (b: Buffer) => {
          out += b.toString('utf8');
          const m = /"url":"(http:\/\/[^"]+)","msg":"embedpool API listening"/.exec(out);
          if (m) resolve(m[1]!);
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.on('close', (code) => reject(new Error(`the compiled API exited (${code}):\n${out}`)));
      });
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      expect((await fetch(`${url}/docs/assets/swagger-ui-bundle.js`)).status).toBe(200);
      const doc = (await (await fetch(`${url}/openapi.json`)).json()) as { info: { version: string } };
      const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
      expect(doc.info.version).toBe(pkg.version);
    } finally {
      child.kill('SIGTERM');
    }
  });
});
