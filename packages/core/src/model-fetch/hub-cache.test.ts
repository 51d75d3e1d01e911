import { randomBytes } from 'node:crypto';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FixtureServer, sha256Hex, startFixtureServer } from '@embedpool/testkit/fixture-server';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EmbedpoolError } from '../errors';
import { fetchModel } from './fetch-model';
import { findCachedModel } from './find-cached-model';
import { hubCacheDir, hubOffline } from './hub-cache';

const REPO = 'onnx-community/dinov2-small';
const COMMIT = 'a'.repeat(40);
const NEWER = 'b'.repeat(40);
const onnx = randomBytes(64 * 1024 + 5);
const config = Buffer.from('{"model_type":"dinov2","hidden_size":384}\n');
const preprocessor = Buffer.from('{"crop_size":{"height":224,"width":224}}\n');

let root: string;
let server: FixtureServer | undefined;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'hub-cache-'));
});
afterEach(async () => {
  await server?.close();
  server = undefined;
  await rm(root, { recursive: true, force: true });
});

/** What huggingface_hub leaves behind: blobs by etag, snapshot symlinks, refs/main. */
function writeHubCache(hub: string): void {
  const repo = join(hub, 'models--onnx-community--dinov2-small');
  mkdirSync(join(repo, 'blobs'), { recursive: true });
  mkdirSync(join(repo, 'refs'), { recursive: true });
  writeFileSync(join(repo, 'refs', 'main'), COMMIT);
  const snap = join(repo, 'snapshots', COMMIT);
  mkdirSync(join(snap, 'onnx'), { recursive: true });
  for (const [path, body, etag] of [
    ['onnx/model.onnx', onnx, sha256Hex(onnx)],
    ['config.json', config, 'c0ffee01'],
    ['preprocessor_config.json', preprocessor, 'c0ffee02'],
  ] as const) {
    writeFileSync(join(repo, 'blobs', etag), body);
    const depth = path.split('/').length - 1;
    symlinkSync(join(...Array(depth + 2).fill('..'), 'blobs', etag), join(snap, path));
  }
}

describe('the Hugging Face hub cache', () => {
  it('follows HF_HUB_CACHE, else HF_HOME/hub, and reads HF_HUB_OFFLINE as huggingface_hub does', () => {
    expect(hubCacheDir({ HF_HUB_CACHE: '/a/hub', HF_HOME: '/b' })).toBe('/a/hub');
    expect(hubCacheDir({ HF_HOME: '/b' })).toBe('/b/hub');
    expect(hubCacheDir({})).toMatch(/\.cache\/huggingface\/hub$/);
    expect(['1', 'true', 'YES', 'on'].map((v) => hubOffline({ HF_HUB_OFFLINE: v }))).toEqual([
      true,
      true,
      true,
      true,
    ]);
    expect(hubOffline({ HF_HUB_OFFLINE: '0' })).toBe(false);
  });

  it('a model already in the hub cache is used by branch name, offline, without a request', async () => {
    const hub = join(root, 'hub');
    writeHubCache(hub);
    server = await startFixtureServer({ files: {} });
    const opts = {
      repo: REPO,
      revision: 'main',
      cacheDir: join(root, 'own'),
      hubCacheDir: hub,
      pins: { 'onnx/model.onnx': sha256Hex(onnx) },
    };
    const found = await findCachedModel(opts);
    expect(found).toMatchObject({ repo: REPO, revision: COMMIT, fromCache: true });
    expect(found!.dir).toBe(join(hub, 'models--onnx-community--dinov2-small', 'snapshots', COMMIT));
    const fetched = await fetchModel({ ...opts, endpoint: server.url, offline: true, progress: 'none' });
    expect(fetched.modelPath).toBe(join(found!.dir, 'onnx', 'model.onnx'));
    expect(server.requests).toEqual([]);
    // A pin the blob does not match is not this model.
    expect(await findCachedModel({ ...opts, pins: { 'onnx/model.onnx': 'f'.repeat(64) } })).toBeUndefined();
  });

  it('offline with nothing cached fails at once, naming HF_HUB_OFFLINE, and sends nothing', async () => {
    server = await startFixtureServer({ files: {} });
    const err = await fetchModel({
      repo: REPO,
      revision: COMMIT,
      cacheDir: join(root, 'own'),
      hubCacheDir: join(root, 'empty-hub'),
      endpoint: server.url,
      offline: true,
      progress: 'none',
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmbedpoolError);
    expect((err as EmbedpoolError).code).toBe('MODEL_NOT_FOUND');
    expect((err as EmbedpoolError).message).toMatch(/HF_HUB_OFFLINE is set .* nothing was downloaded/);
    expect(server.requests).toEqual([]);
    const noRef = await fetchModel({
      repo: REPO,
      revision: 'main',
      cacheDir: join(root, 'own'),
      hubCacheDir: join(root, 'empty-hub'),
      endpoint: server.url,
      offline: true,
    }).catch((e: unknown) => e);
    expect((noRef as Error).message).toMatch(/no ref "main"/);
    expect(server.requests).toEqual([]);
  });

  it('online, a branch name is resolved by the hub API to a commit, then downloaded under that commit', async () => {
    const base = `/${REPO}/resolve/${NEWER}`;
    server = await startFixtureServer({
      files: {
        [`${base}/onnx/model.onnx`]: { body: onnx },
        [`${base}/config.json`]: { body: config, linkedEtag: null },
        [`${base}/preprocessor_config.json`]: { body: preprocessor, linkedEtag: null },
      },
      revisions: { [`${REPO}@main`]: NEWER },
    });
    const fetched = await fetchModel({
      repo: REPO,
      revision: 'main',
      cacheDir: join(root, 'own'),
      hubCacheDir: join(root, 'empty-hub'),
      endpoint: server.url,
      offline: false,
      retryDelayMs: 1,
      progress: 'none',
    });
    expect(fetched).toMatchObject({ repo: REPO, revision: NEWER, fromCache: false });
    expect(server.requests[0]!.path).toBe(`/api/models/${REPO}/revision/main`);
    const missing = await fetchModel({
      repo: REPO,
      revision: 'v9',
      cacheDir: join(root, 'own'),
      hubCacheDir: join(root, 'empty-hub'),
      endpoint: server.url,
      offline: false,
    }).catch((e: unknown) => e);
    expect((missing as EmbedpoolError).code).toBe('MODEL_NOT_FOUND');
  });
});
