import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  fetchedModelId,
  identityPath,
  randomModelId,
  readModelIdentity,
  writeModelIdentity,
} from './identity';
import { resolveModelId } from './resolve';

const dir = mkdtempSync(join(tmpdir(), 'embedpool-identity-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('model identity', () => {
  it('names fetched and random models', () => {
    expect(fetchedModelId('facebook/dinov2-base', 'f9e44c814b77203eaa57a6bdbbd535f21ede1415')).toBe(
      'facebook/dinov2-base@f9e44c814b77203eaa57a6bdbbd535f21ede1415',
    );
    expect(fetchedModelId('Xenova/dinov2-base', 'abc', 'fp16')).toBe('Xenova/dinov2-base@abc:fp16');
    expect(randomModelId('dinov2-base', 0)).toBe('random-dinov2-base-seed0');
  });

  it('writes the id with the sha256 of the file and reads it back only for those bytes', async () => {
    const model = join(dir, 'm.onnx');
    writeFileSync(model, 'model bytes');
    const written = await writeModelIdentity(model, 'org/m@1', { command: 'test' });
    expect(written.sha256).toBe(createHash('sha256').update('model bytes').digest('hex'));
    expect(await readModelIdentity(model)).toEqual({ status: 'ok', identity: written });

    writeFileSync(model, 'other bytes');
    const changed = await readModelIdentity(model);
    expect(changed.status).toBe('mismatch');
    await expect(resolveModelId({ modelPath: model, production: true })).rejects.toThrow(
      /written for another file/,
    );

    writeFileSync(identityPath(model), '{"id": 5}');
    expect((await readModelIdentity(model)).status).toBe('invalid');
  });

  it('takes MODEL_ID first, then what the source knows, then the sidecar', async () => {
    const model = join(dir, 'n.onnx');
    writeFileSync(model, 'n');
    await writeModelIdentity(model, 'from-sidecar');
    const base = { modelPath: model, production: true };
    expect(await resolveModelId({ ...base, envId: 'env', knownId: 'known' })).toEqual({
      id: 'env',
      from: 'env',
    });
    expect(await resolveModelId({ ...base, knownId: 'known' })).toEqual({ id: 'known', from: 'known' });
    expect(await resolveModelId(base)).toEqual({ id: 'from-sidecar', from: 'sidecar' });
  });
});
