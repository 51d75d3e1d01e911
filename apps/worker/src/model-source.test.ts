import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@embedpool/core/config';
import { createLogger } from '@embedpool/core/logger';
import { writeModelIdentity } from '@embedpool/core/model-identity';
import { PARITY_MODEL, PARITY_WEIGHTS } from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveModel } from './model-source';
import { startWorker } from './worker';

const logger = createLogger({ name: 'test', level: 'silent' });
let dir: string;
let bare: string;
let identified: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'embedpool-model-id-'));
  bare = join(dir, 'bare', 'model.onnx');
  identified = join(dir, 'identified', 'model.onnx');
  for (const p of [bare, identified]) {
    mkdirSync(join(p, '..'), { recursive: true });
    copyFileSync(PARITY_MODEL, p);
  }
  await writeModelIdentity(identified, 'test-org/dinov2-parity@0123456789abcdef', { command: 'test' });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const config = (env: Record<string, string>) =>
  loadConfig({ LOG_LEVEL: 'silent', MODEL_FETCH: 'false', ...env });

describe('model identity at worker boot', () => {
  it("reports the id recorded beside the model, not the file's name", async () => {
    const m = await resolveModel(config({ MODEL_PATH: identified }), logger);
    expect(m.modelId).toBe('test-org/dinov2-parity@0123456789abcdef');
  });

  it('lets MODEL_ID override it', async () => {
    const m = await resolveModel(config({ MODEL_PATH: identified, MODEL_ID: 'fleet-a/model-7' }), logger);
    expect(m.modelId).toBe('fleet-a/model-7');
  });

  it("outside production, a model without an id is named by its content's sha256", async () => {
    const m = await resolveModel(config({ MODEL_PATH: bare }), logger);
    expect(m.modelId).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(m.modelId).not.toContain('model.onnx');
  });

  it('in production, a worker whose model has no id refuses to start with one sentence saying what to do', async () => {
    const err = await startWorker({ config: config({ NODE_ENV: 'production', MODEL_PATH: bare }) }).catch(
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(Error);
    const message = (err as Error).message;
    expect(message).toBe(
      `the model at ${bare} has no id (no model.onnx.identity.json beside it): set MODEL_ID, or build or fetch it with \`embedpool model build\` / \`embedpool model fetch\`, which record one`,
    );
    expect(message.split('. ').length).toBe(1);
    // MODEL_ID is enough for production.
    const ok = await resolveModel(
      config({ NODE_ENV: 'production', MODEL_PATH: bare, MODEL_ID: 'x@1' }),
      logger,
    );
    expect(ok.modelId).toBe('x@1');
  });

  it("in production, refuses an identity file written for another model's bytes", async () => {
    const other = join(dir, 'other.onnx');
    copyFileSync(PARITY_WEIGHTS, other);
    const identity = await writeModelIdentity(other, 'someone/else@1');
    writeFileSync(`${bare}.identity.json`, JSON.stringify(identity));
    try {
      await expect(
        resolveModel(config({ NODE_ENV: 'production', MODEL_PATH: bare }), logger),
      ).rejects.toThrow(/has no id \(its model\.onnx\.identity\.json was written for another file/);
    } finally {
      rmSync(`${bare}.identity.json`);
    }
  });
});
