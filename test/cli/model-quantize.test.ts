import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeModelIdentity } from '@embedpool/core/model-identity';
import { DEFAULT_CALIBRATION_DIR, readModelPrecision } from '@embedpool/core/quantize';
import { buildOutlierDinov2 } from '@embedpool/testkit/stress-model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './run-cli';

let dir: string;
let fp32: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'embedpool-cli-quantize-'));
  fp32 = join(dir, 'stress.onnx');
  // The project's own stress model: a few residual channels tens of times the rest, large LayerNorm gains.
  await writeFile(fp32, buildOutlierDinov2());
  await writeModelIdentity(fp32, 'outlier-stress-seed0');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('embedpool model quantize / compare', { timeout: 120_000 }, () => {
  it('the gate refuses a naive int8 of the outlier model: exit 1, the numbers, no file', async () => {
    const out = join(dir, 'naive.onnx');
    const r = await runCli([
      'model',
      'quantize',
      fp32,
      '--out',
      out,
      '--method',
      'naive',
      '--max-float-fallback',
      '0',
      '--threads',
      '1',
    ]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/REFUSED: min cosine 0\.\d{4} < 0\.995 on \S+; nothing written/);
    expect(r.stderr).toMatch(/cosine:\s+min 0\.\d{4}\s+mean 0\.\d{4}/);
    expect(existsSync(out)).toBe(false);
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('SmoothQuant passes and writes an int8 model that compare and model info accept', async () => {
    const out = join(dir, 'int8.onnx');
    const r = await runCli(['model', 'quantize', fp32, '--out', out, '--threads', '1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as {
      passed: boolean;
      gate: { minCosine: number; worst: { name: string } };
      metadata: Record<string, string>;
      written: string;
    };
    expect(report.passed).toBe(true);
    expect(report.gate.minCosine).toBeGreaterThanOrEqual(0.995);
    expect(report.written).toBe(out);
    expect(report.metadata['embedpool.source.sha256']).toMatch(/^[0-9a-f]{64}$/);
    expect(await readModelPrecision(out)).toMatchObject({ precision: 'int8' });

    const info = await runCli(['model', 'info', out, '--json']);
    expect(info.code, info.stderr).toBe(0);
    const infoJson = JSON.parse(info.stdout) as {
      precision: string;
      id: string | null;
      quantization: Record<string, string>;
    };
    expect(infoJson.precision).toBe('int8');
    // Named after the source's recorded identity, so a production worker can serve it.
    expect(infoJson.id).toBe('outlier-stress-seed0:int8');
    expect(report.metadata['embedpool.source.id']).toBe('outlier-stress-seed0');
    expect(infoJson.quantization['embedpool.source.sha256']).toBe(report.metadata['embedpool.source.sha256']);

    const cmp = await runCli(['model', 'compare', fp32, out, '--threads', '1']);
    expect(cmp.code, cmp.stderr).toBe(0);
    expect(cmp.stdout).toMatch(/b: .*int8\.onnx \(int8\)/);
    expect(cmp.stdout).toMatch(/cosine:\s+min 0\.99\d\d\s+mean/);
    expect(cmp.stdout).toMatch(/norm ratio: \d\.\d{4} \.\. \d\.\d{4}/);
    expect(cmp.stdout).toMatch(/worst:\s+\S+\.jpg \(cosine/);
  });

  it('compare --min-cosine exits 1 when a model falls short on the given photos', async () => {
    const naive = join(dir, 'naive-forced.onnx');
    const q = await runCli([
      'model',
      'quantize',
      fp32,
      '--out',
      naive,
      '--method',
      'naive',
      '--max-float-fallback',
      '0',
      '--min-cosine',
      '0.5',
      '--threads',
      '1',
    ]);
    expect(q.code, q.stderr).toBe(0);
    const images = DEFAULT_CALIBRATION_DIR;
    const r = await runCli([
      'model',
      'compare',
      fp32,
      naive,
      '--images',
      images,
      '--min-cosine',
      '0.995',
      '--json',
      '--threads',
      '1',
    ]);
    expect(r.code, r.stderr).toBe(1);
    const report = JSON.parse(r.stdout) as { minCosine: number; images: number; passed: boolean };
    expect(report.images).toBe(4);
    expect(report.passed).toBe(false);
    expect(report.minCosine).toBeLessThan(0.995);
  });

  it('bad flags are usage errors', async () => {
    const r = await runCli(['model', 'quantize', fp32, '--out', join(dir, 'x.onnx'), '--min-cosine', '1.5']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--min-cosine.*must be a number in \(0, 1\]/);
  });
});
