/**
 * `model fetch --model-id ... --revision main`: a DINOv2-with-registers checkpoint fetched by its hub id
 * from a loopback hub, its branch resolved to a commit, and built into an ONNX model with register tokens.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDinov2Config, randomDinov2Weights, type WeightMap } from '@embedpool/core/model';
import { type FixtureServer, startFixtureServer } from '@embedpool/testkit/fixture-server';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './run-cli';

const REPO = 'facebook/dinov2-with-registers-small';
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const CONFIG = {
  model_type: 'dinov2_with_registers',
  hidden_size: 32,
  num_hidden_layers: 1,
  num_attention_heads: 4,
  patch_size: 4,
  image_size: 16,
  num_register_tokens: 4,
};

/** float32 safetensors: 8-byte little-endian header length, JSON header, then the raw tensors. */
function safetensors(weights: WeightMap): Buffer {
  const header: Record<string, unknown> = {};
  const parts: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of weights) {
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...parts]);
}

let server: FixtureServer;
let cacheDir: string;

beforeAll(async () => {
  const base = `/${REPO}/resolve/${COMMIT}`;
  server = await startFixtureServer({
    files: {
      [`${base}/model.safetensors`]: { body: safetensors(randomDinov2Weights(parseDinov2Config(CONFIG), 3)) },
      [`${base}/config.json`]: { body: Buffer.from(JSON.stringify(CONFIG)), linkedEtag: null },
      [`${base}/preprocessor_config.json`]: {
        body: Buffer.from(JSON.stringify({ crop_size: { height: 16, width: 16 }, do_center_crop: true })),
        linkedEtag: null,
      },
    },
    revisions: { [`${REPO}@main`]: COMMIT },
  });
  cacheDir = await mkdtemp(join(tmpdir(), 'embedpool-cli-fetch-hf-'));
});
afterAll(async () => {
  await server?.close();
  await rm(cacheDir, { recursive: true, force: true });
});

describe('embedpool model fetch --model-id', { timeout: 120_000 }, () => {
  it('fetches a with-registers checkpoint by id at a branch and builds it with its register tokens', async () => {
    const hub = join(cacheDir, 'no-hub-cache');
    const r = await runCli(
      [
        'model',
        'fetch',
        '--model-id',
        REPO,
        '--revision',
        'main',
        '--cache-dir',
        cacheDir,
        '--endpoint',
        server.url,
      ],
      { HF_HUB_CACHE: hub },
    );
    expect(r.code, r.stderr).toBe(0);
    const path = r.stdout.trim();
    expect(path).toBe(join(cacheDir, 'facebook--dinov2-with-registers-small', COMMIT, 'model.onnx'));
    expect(server.requests[0]!.path).toBe(`/api/models/${REPO}/revision/main`);
    expect(r.stderr).toContain(`downloaded: ${REPO}@${COMMIT}`);
    const session = await ort.InferenceSession.create(readFileSync(path));
    const out = await session.run({
      pixel_values: new ort.Tensor('float32', new Float32Array(3 * 16 * 16).fill(0.5), [1, 3, 16, 16]),
    });
    // CLS + 4 registers + a 4x4 grid of patches.
    expect(out.last_hidden_state!.dims).toEqual([1, 1 + 4 + 16, 32]);

    // The same id again, offline: from the cache, no request at all.
    const before = server.requests.length;
    const again = await runCli(
      ['model', 'fetch', '--model-id', REPO, '--revision', COMMIT, '--cache-dir', cacheDir],
      {
        HF_HUB_CACHE: hub,
        HF_HUB_OFFLINE: '1',
      },
    );
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.trim()).toBe(path);
    expect(again.stderr).toContain('found in the cache');
    expect(server.requests.length).toBe(before);
  });
});
