import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PARITY_CONFIG, PARITY_MODEL } from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './run-cli';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'embedpool-cli-model-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface InfoJson {
  bytes: number;
  inputs: { name: string; type: string; shape: (number | string)[] }[];
  outputs: { name: string; type: string; shape: (number | string)[] }[];
  embedding: { output: string; from: string; dim: number | null } | null;
  dim: number | null;
  id: string | null;
}

async function info(path: string): Promise<InfoJson> {
  const r = await runCli(['model', 'info', path, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as InfoJson;
}

// Each test starts the CLI (a second or more of tsx and imports); a busy machine needs headroom.
describe('embedpool model', { timeout: 120_000 }, () => {
  it('info reads the fixture model: pooler_output, dim 192', async () => {
    const i = await info(PARITY_MODEL);
    expect(i.id).toBeNull();
    expect(i.dim).toBe(192);
    expect(i.embedding).toMatchObject({ output: 'pooler_output', from: 'pooler_output', dim: 192 });
    expect(i.inputs).toEqual([{ name: 'pixel_values', type: 'float32', shape: ['batch_size', 3, 224, 224] }]);
    expect(i.outputs.map((o) => o.name).sort()).toEqual(['last_hidden_state', 'pooler_output']);
    expect(i.bytes).toBe(readFileSync(PARITY_MODEL).length);
  });

  it('build with random weights is deterministic per seed, at the requested image size', async () => {
    const a = join(dir, 'a.onnx');
    const b = join(dir, 'b.onnx');
    const args = (out: string) => [
      'model',
      'build',
      '--config',
      PARITY_CONFIG,
      '--seed',
      '3',
      '--image-size',
      '112',
      '--out',
      out,
    ];
    const [ra, rb] = await Promise.all([runCli(args(a)), runCli(args(b))]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    expect(ra.stdout).toContain('weights=random(seed=3)');
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    // A config file (not a preset) names the random build `random-dinov2-custom-seed<n>`.
    expect(ra.stdout).toContain('id=random-dinov2-custom-seed3 ');
    expect(JSON.parse(readFileSync(`${a}.identity.json`, 'utf8'))).toMatchObject({
      id: 'random-dinov2-custom-seed3',
      sha256: createHash('sha256').update(readFileSync(a)).digest('hex'),
    });

    const i = await info(a);
    expect(i.id).toBe('random-dinov2-custom-seed3');
    expect(i.dim).toBe(192);
    expect(i.inputs[0]!.shape).toEqual(['batch_size', 3, 112, 112]);
    expect(i.embedding?.output).toBe('pooler_output');
  });

  it('accepts preset names, and reports what cannot be built as a one-line error with exit 1', async () => {
    // Giant in float32 is over ONNX's 2 GiB limit; the builder refuses before making any weights.
    const r = await runCli(['model', 'build', '--config', 'dinov2-giant', '--out', join(dir, 'g.onnx')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/2 GiB.*\(MODEL_INVALID\)/);
    expect(r.stderr).not.toMatch(/\n\s+at /);

    const missing = await runCli(['model', 'info', join(dir, 'nope.onnx')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/not found: .*nope\.onnx \(MODEL_NOT_FOUND\)/);
  });
});
