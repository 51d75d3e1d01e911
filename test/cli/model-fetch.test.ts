import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDinov2Onnx, loadDinov2Config } from '@embedpool/core/model';
import {
  DEFAULT_MODEL_REPO,
  DEFAULT_MODEL_REVISION,
  FACEBOOK_MODEL_REPO,
  FACEBOOK_MODEL_REVISION,
} from '@embedpool/core/model-fetch';
import { DINOV2_PREPROCESSOR_CONFIG } from '@embedpool/core/preprocess';
import { PARITY_CONFIG, PARITY_MODEL, PARITY_WEIGHTS } from '@embedpool/testkit';
import { type FixtureFile, type FixtureServer, startFixtureServer } from '@embedpool/testkit/fixture-server';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from './run-cli';

const X = `/${DEFAULT_MODEL_REPO}/resolve/${DEFAULT_MODEL_REVISION}`;
const F = `/${FACEBOOK_MODEL_REPO}/resolve/${FACEBOOK_MODEL_REVISION}`;
const config = readFileSync(PARITY_CONFIG);
const preprocessor = Buffer.from(JSON.stringify(DINOV2_PREPROCESSOR_CONFIG));

const HUB: Record<string, FixtureFile> = {
  [`${X}/onnx/model.onnx`]: { body: readFileSync(PARITY_MODEL) },
  [`${X}/config.json`]: { body: config, linkedEtag: null },
  [`${X}/preprocessor_config.json`]: { body: preprocessor, linkedEtag: null },
  [`${F}/model.safetensors`]: { body: readFileSync(PARITY_WEIGHTS) },
  [`${F}/config.json`]: { body: config, linkedEtag: null },
  [`${F}/preprocessor_config.json`]: { body: preprocessor, linkedEtag: null },
};

let server: FixtureServer;
let cacheDir: string;

beforeAll(async () => {
  server = await startFixtureServer({ files: HUB });
});
afterAll(() => server.close());
beforeEach(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'embedpool-cli-fetch-'));
});
afterEach(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

// Each test starts the CLI (a second or more of tsx and imports); a busy machine needs headroom.
describe('embedpool model fetch', { timeout: 120_000 }, () => {
  it('downloads the Xenova ONNX layout from HF_ENDPOINT into --cache-dir and prints the model path', async () => {
    const r = await runCli(['model', 'fetch', '--cache-dir', cacheDir], { HF_ENDPOINT: server.url });
    expect(r.code, r.stderr).toBe(0);
    const path = r.stdout.trim();
    expect(path).toBe(join(cacheDir, 'Xenova--dinov2-base', DEFAULT_MODEL_REVISION, 'onnx', 'model.onnx'));
    expect(readFileSync(path).equals(HUB[`${X}/onnx/model.onnx`]!.body)).toBe(true);
    expect(server.gets('onnx/model.onnx').length).toBeGreaterThan(0);
    // The id travels beside the file: repo@commit and the file's sha256.
    const identity = JSON.parse(readFileSync(`${path}.identity.json`, 'utf8'));
    expect(identity).toMatchObject({
      id: `${DEFAULT_MODEL_REPO}@${DEFAULT_MODEL_REVISION}`,
      sha256: createHash('sha256').update(readFileSync(path)).digest('hex'),
    });
  });

  it('fetches the facebook checkpoint via --endpoint and builds the ONNX model beside the weights', async () => {
    const r = await runCli([
      'model',
      'fetch',
      '--source',
      'facebook-safetensors',
      '--cache-dir',
      cacheDir,
      '--endpoint',
      server.url,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const path = r.stdout.trim();
    const dir = join(cacheDir, 'facebook--dinov2-base', FACEBOOK_MODEL_REVISION);
    expect(path).toBe(join(dir, 'model.onnx'));
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(true);
    const expected = buildDinov2Onnx({ config: loadDinov2Config(PARITY_CONFIG), weights: PARITY_WEIGHTS });
    expect(readFileSync(path).equals(Buffer.from(expected))).toBe(true);
    const identity = JSON.parse(readFileSync(`${path}.identity.json`, 'utf8'));
    expect(identity.id).toBe(`${FACEBOOK_MODEL_REPO}@${FACEBOOK_MODEL_REVISION}`);
    expect(identity.sha256).toBe(createHash('sha256').update(readFileSync(path)).digest('hex'));
  });
});
