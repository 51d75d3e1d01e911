import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApi } from '@embedpool/api';
import { writeModelIdentity } from '@embedpool/core/model-identity';
import { PARITY_MODEL, parityImages } from '@embedpool/testkit';
import { startMetricsServer, startWorker } from '@embedpool/worker';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanPrefix, postJson, testConfig } from '../support/stack';

const ID = 'test-org/dinov2-parity@0123456789abcdef0123456789abcdef01234567';

/** A worker booted from MODEL_PATH (no model handed in) reports the id recorded beside the file. */
describe('model identity in answers and metrics', () => {
  let dir: string;
  let modelPath: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'embedpool-identity-'));
    modelPath = join(dir, 'model.onnx');
    copyFileSync(PARITY_MODEL, modelPath);
    await writeModelIdentity(modelPath, ID, { command: 'test' });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('/v1/embeddings answers with the id, and embedpool_model_info carries it, not "model.onnx"', async () => {
    const config = testConfig({ MODEL_PATH: modelPath, NODE_ENV: 'production', AUTH: 'none' });
    const registry = new Registry();
    const worker = await startWorker({ config, registry });
    const api = await startApi({ config });
    const metrics = await startMetricsServer(registry, '127.0.0.1', 0);
    try {
      expect(worker.model.modelId).toBe(ID);
      const image = readFileSync(parityImages().find((i) => i.reference)!.path).toString('base64');
      const res = await postJson(`${api.url}/v1/embeddings`, { model: 'dinov2-base', input: [image] });
      expect(res.status).toBe(200);
      expect(res.json.model).toBe(ID);
      const text = await (await fetch(`${metrics.url}/metrics`)).text();
      expect(text).toContain(`embedpool_model_info{model="${ID}",model_id="${ID}",`);
      expect(text).not.toContain('model="model.onnx"');
    } finally {
      await metrics.close();
      await api.close();
      await worker.close();
      await cleanPrefix(config.QUEUE_PREFIX);
    }
  });
});
