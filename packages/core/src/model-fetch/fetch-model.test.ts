import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type FixtureFile,
  type FixtureServer,
  sha256Hex,
  startFixtureServer,
} from '@embedpool/testkit/fixture-server';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EmbedpoolError } from '../errors';
import { fetchModel } from './fetch-model';
import { findCachedModel, requireCachedModel } from './find-cached-model';
import {
  DEFAULT_MODEL_REPO,
  DEFAULT_MODEL_REVISION,
  FACEBOOK_MODEL_REPO,
  FACEBOOK_MODEL_REVISION,
} from './manifest';
import type { ProgressEvent } from './progress';

const X = `/${DEFAULT_MODEL_REPO}/resolve/${DEFAULT_MODEL_REVISION}`;
const F = `/${FACEBOOK_MODEL_REPO}/resolve/${FACEBOOK_MODEL_REVISION}`;
const onnx = randomBytes(2 * 1024 * 1024 + 7);
const onnx16 = randomBytes(1024 * 1024 + 3);
const weights = randomBytes(1024 * 1024 + 11);
const config = Buffer.from('{"model_type":"dinov2","hidden_size":768}\n');
const preprocessor = Buffer.from('{"crop_size":{"height":224,"width":224}}\n');

const HUB: Record<string, FixtureFile> = {
  [`${X}/onnx/model.onnx`]: { body: onnx },
  [`${X}/onnx/model_fp16.onnx`]: { body: onnx16 },
  [`${X}/config.json`]: { body: config, linkedEtag: null },
  [`${X}/preprocessor_config.json`]: { body: preprocessor, linkedEtag: null },
  [`${F}/model.safetensors`]: { body: weights },
  [`${F}/config.json`]: { body: config, linkedEtag: null },
  [`${F}/preprocessor_config.json`]: { body: preprocessor, linkedEtag: null },
};

let cacheDir: string;
let server: FixtureServer;

beforeEach(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'model-cache-'));
  server = await startFixtureServer({ files: HUB, redirect: 'other-host' });
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await server.close();
  await rm(cacheDir, { recursive: true, force: true });
});

const base = () => ({ cacheDir, endpoint: server.url, retryDelayMs: 1, progress: 'none' as const });

describe('fetchModel', () => {
  it('fetches the Xenova layout into <cacheDir>/<owner>--<name>/<commit>, then serves it from the cache', async () => {
    const events: ProgressEvent[] = [];
    const model = await fetchModel({ ...base(), token: 'hf_abc', onProgress: (e) => events.push(e) });
    const dir = join(cacheDir, 'Xenova--dinov2-base', DEFAULT_MODEL_REVISION);
    expect(model).toMatchObject({
      source: 'xenova-onnx',
      dir,
      modelPath: join(dir, 'onnx', 'model.onnx'),
      configPath: join(dir, 'config.json'),
      preprocessorConfigPath: join(dir, 'preprocessor_config.json'),
      fromCache: false,
    });
    expect(model.weightsPath).toBeUndefined();
    expect(readFileSync(model.modelPath!).equals(onnx)).toBe(true);
    expect(readFileSync(model.configPath).equals(config)).toBe(true);
    expect(readFileSync(model.preprocessorConfigPath).equals(preprocessor)).toBe(true);
    expect(events.at(-1)).toMatchObject({ file: `${DEFAULT_MODEL_REPO}/preprocessor_config.json` });
    expect(events.some((e) => e.file.endsWith('model.onnx') && e.received === onnx.length)).toBe(true);
    for (const r of server.requests) {
      expect(r.headers.authorization).toBe(r.host.startsWith('127.0.0.1') ? 'Bearer hf_abc' : undefined);
    }

    const requests = server.requests.length;
    const again = await fetchModel(base());
    expect(again).toEqual({ ...model, fromCache: true });
    expect(server.requests).toHaveLength(requests);
  });

  it('fetches the fp16 variant beside the fp32 one', async () => {
    const fp32 = await fetchModel(base());
    const fp16 = await fetchModel({ ...base(), variant: 'fp16' });
    expect(fp16.dir).toBe(fp32.dir);
    expect(readFileSync(fp16.modelPath!).equals(onnx16)).toBe(true);
    expect((await findCachedModel({ cacheDir }))?.modelPath).toBe(fp32.modelPath);
    expect((await findCachedModel({ cacheDir, variant: 'fp16' }))?.modelPath).toBe(fp16.modelPath);
  });

  it('fetches the facebook safetensors checkpoint', async () => {
    const model = await fetchModel({ ...base(), source: 'facebook-safetensors' });
    expect(model.dir).toBe(join(cacheDir, 'facebook--dinov2-base', FACEBOOK_MODEL_REVISION));
    expect(model.modelPath).toBeUndefined();
    expect(model.files.weights).toBe(model.weightsPath);
    expect(readFileSync(model.weightsPath!).equals(weights)).toBe(true);
  });

  it('reads HF_ENDPOINT, HF_TOKEN and EMBEDPOOL_CACHE_DIR from the environment', async () => {
    vi.stubEnv('HF_ENDPOINT', `${server.url}/`);
    vi.stubEnv('HF_TOKEN', 'hf_env');
    vi.stubEnv('EMBEDPOOL_CACHE_DIR', cacheDir);
    const model = await fetchModel({ retryDelayMs: 1, progress: 'none' });
    expect(model.dir.startsWith(cacheDir)).toBe(true);
    expect(server.requests[0]!.headers.authorization).toBe('Bearer hf_env');
    expect(await findCachedModel()).toEqual({ ...model, fromCache: true });
  });

  it('fails with MODEL_NOT_FOUND for a revision the hub does not have', async () => {
    const err = await fetchModel({ ...base(), revision: 'f'.repeat(40) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmbedpoolError);
    expect((err as EmbedpoolError).code).toBe('MODEL_NOT_FOUND');
  });

  it('fails with DOWNLOAD_HASH_MISMATCH for a wrong pin and records nothing', async () => {
    const pins = { 'onnx/model.onnx': 'c'.repeat(64) };
    const err = await fetchModel({ ...base(), pins }).catch((e: unknown) => e);
    expect((err as EmbedpoolError).code).toBe('DOWNLOAD_HASH_MISMATCH');
    const dir = join(cacheDir, 'Xenova--dinov2-base', DEFAULT_MODEL_REVISION);
    expect(existsSync(join(dir, 'onnx', 'model.onnx'))).toBe(false);
    expect(existsSync(join(dir, 'onnx', 'model.onnx.partial'))).toBe(false);
    expect(await findCachedModel({ cacheDir })).toBeUndefined();
  });

  it('accepts a correct pin', async () => {
    const model = await fetchModel({ ...base(), pins: { 'onnx/model.onnx': sha256Hex(onnx).toUpperCase() } });
    expect(readFileSync(model.modelPath!).equals(onnx)).toBe(true);
    expect(await findCachedModel({ cacheDir, pins: { 'onnx/model.onnx': sha256Hex(onnx) } })).toBeDefined();
    expect(await findCachedModel({ cacheDir, pins: { 'onnx/model.onnx': 'd'.repeat(64) } })).toBeUndefined();
  });
});

describe('findCachedModel', () => {
  it('returns undefined for an empty cache and requireCachedModel says how to fix it', async () => {
    expect(await findCachedModel({ cacheDir })).toBeUndefined();
    const err = await requireCachedModel({ cacheDir }).catch((e: unknown) => e);
    expect((err as EmbedpoolError).code).toBe('MODEL_NOT_FOUND');
  });

  it('notices a truncated file, and a same-size corruption when asked to verify', async () => {
    const model = await fetchModel(base());
    const path = model.modelPath!;
    writeFileSync(path, randomBytes(onnx.length));
    expect(await findCachedModel({ cacheDir })).toBeDefined();
    expect(await findCachedModel({ cacheDir, verify: true })).toBeUndefined();
    writeFileSync(path, onnx.subarray(0, 100));
    expect(await findCachedModel({ cacheDir })).toBeUndefined();
    // fetchModel repairs it: the bad final file is replaced by a verified download.
    const repaired = await fetchModel(base());
    expect(readFileSync(repaired.modelPath!).equals(onnx)).toBe(true);
  });
});
