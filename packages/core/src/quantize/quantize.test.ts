import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PARITY_MODEL } from '@embedpool/testkit';
import { buildOutlierDinov2, STRESS_TEST_CONFIG } from '@embedpool/testkit/stress-model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDinov2Onnx } from '../model';
import { compareSessions } from './compare';
import { openSession } from './embed-session';
import { DEFAULT_HOLDOUT_DIR, loadImageDir } from './images';
import { readModelPrecision } from './model-precision';
import { decodeModel, encodeModel, getMetadata, type NodeProto } from './onnx-io';
import { quantizeModel } from './quantize-model';

let dir: string;
let stress: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'embedpool-quantize-'));
  stress = join(dir, 'stress.onnx');
  await writeFile(stress, buildOutlierDinov2());
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ops = (bytes: Uint8Array) => (decodeModel(bytes).graph!.node ?? []).map((n) => n.opType);

describe('quantizeModel', { timeout: 120_000 }, () => {
  it('naive int8 fails the gate on the outlier model; SmoothQuant passes it, with its provenance', async () => {
    const naive = await quantizeModel({ input: stress, method: 'naive', maxFloatFallback: 0, threads: 1 });
    expect(naive.passed).toBe(false);
    expect(naive.gate.minCosine).toBeLessThan(0.995);

    const smooth = await quantizeModel({ input: stress, threads: 1 });
    expect(smooth.passed).toBe(true);
    expect(smooth.gate.minCosine).toBeGreaterThanOrEqual(0.995);
    expect(smooth.gate.minNormRatio).toBeGreaterThan(0.95);
    expect(smooth.gate.maxNormRatio).toBeLessThan(1.05);
    // Held-out photos are the shipped ones, none of which is a calibration photo.
    expect(smooth.gate.perImage.map((p) => p.name).sort()).toEqual([
      'camera.jpg',
      'chelsea.jpg',
      'grace_hopper.jpg',
      'hubble.jpg',
      'rocket.jpg',
    ]);
    // Every LayerNorm in front of a MatMul took the smoothing: 2 per layer.
    expect(smooth.rewrite.smoothedGroups).toBe(2 * STRESS_TEST_CONFIG.num_hidden_layers!);
    expect(smooth.rewrite.smoothScale!.max).toBeGreaterThan(10);

    const model = decodeModel(smooth.model);
    const kinds = ops(smooth.model);
    // 4 weight MatMuls per layer (qkv, attention output, fc1, fc2) became int8; attention's own stay float.
    expect(kinds.filter((k) => k === 'DynamicQuantizeMatMul')).toHaveLength(12);
    expect(kinds.filter((k) => k === 'MatMul')).toHaveLength(6);
    const q = (model.graph!.node ?? []).find((n: NodeProto) => n.opType === 'DynamicQuantizeMatMul')!;
    expect(q.domain).toBe('com.microsoft');
    expect(model.opsetImport!.some((o) => o.domain === 'com.microsoft')).toBe(true);
    const meta = getMetadata(model);
    expect(meta['embedpool.precision']).toBe('int8');
    expect(meta['embedpool.quantization.method']).toBe('smoothquant+dynamic-int8');
    expect(meta['embedpool.source.sha256']).toBe(smooth.source.sha256);
    expect(meta['embedpool.source.sha256']).toMatch(/^[0-9a-f]{64}$/);
    expect(meta['embedpool.source.id']).toBe('stress.onnx');
    expect(Number(meta['embedpool.quantization.min_cosine'])).toBeCloseTo(smooth.gate.minCosine, 5);
    // int8 weights: about a quarter of the float32 file.
    expect(smooth.model.length).toBeLessThan(0.45 * smooth.source.bytes);
  });

  it('falls back to float32 for the most outlier-prone MatMuls when calibration photos score low', async () => {
    const r = await quantizeModel({ input: stress, method: 'naive', maxFloatFallback: 2, threads: 1 });
    expect(r.rewrite.keptFloat).toHaveLength(2);
    // The fallback only ever looks at calibration photos; the held-out score is still reported honestly.
    const kinds = ops(r.model);
    expect(kinds.filter((k) => k === 'DynamicQuantizeMatMul')).toHaveLength(10);
    expect(r.calibration.minCosine).toBeGreaterThan(0);
  });

  it('quantizes a torch export (separate q/k/v MatMuls behind one LayerNorm)', async () => {
    const r = await quantizeModel({ input: PARITY_MODEL, threads: 1, sourceId: 'parity-fixture' });
    expect(r.passed).toBe(true);
    expect(r.matmuls).toBe(18);
    // norm1 feeds query, key and value: one group of three; norm2 feeds fc1.
    expect(r.rewrite.smoothedGroups).toBe(6);
    expect(getMetadata(decodeModel(r.model))['embedpool.source.id']).toBe('parity-fixture');
  });

  it('quantizes the decomposed LayerNorm layout of older exports (Mul by gain, Add of bias)', async () => {
    const path = join(dir, 'decomposed.onnx');
    await writeFile(path, decomposeLayerNorms(buildOutlierDinov2()));
    expect(ops(await import('node:fs/promises').then((f) => f.readFile(path)))).not.toContain(
      'LayerNormalization',
    );
    const r = await quantizeModel({ input: path, threads: 1, maxFloatFallback: 0 });
    expect(r.rewrite.smoothedGroups).toBe(6);
    expect(r.passed).toBe(true);
  });

  it('refuses a model that is already int8, and calibration photos reused as held-out ones', async () => {
    const smooth = await quantizeModel({ input: stress, threads: 1 });
    const int8 = join(dir, 'int8.onnx');
    await writeFile(int8, smooth.model);
    await expect(quantizeModel({ input: int8 })).rejects.toThrow(/already quantized/);
    const { DEFAULT_CALIBRATION_DIR } = await import('./images');
    await expect(quantizeModel({ input: stress, holdoutDir: DEFAULT_CALIBRATION_DIR })).rejects.toThrow(
      /must not be calibration photos/,
    );
  });
});

describe('readModelPrecision', { timeout: 60_000 }, () => {
  it('reads int8 from the metadata, float32 and float16 from the graph', async () => {
    const fp16 = join(dir, 'fp16.onnx');
    await writeFile(fp16, buildDinov2Onnx({ config: STRESS_TEST_CONFIG, dtype: 'float16' }));
    expect(await readModelPrecision(stress)).toMatchObject({ precision: 'float32', from: 'graph' });
    expect(await readModelPrecision(PARITY_MODEL)).toMatchObject({ precision: 'float32', from: 'graph' });
    expect(await readModelPrecision(fp16)).toMatchObject({ precision: 'float16', from: 'graph' });
    // compare works across precisions: the same weights in fp32 and fp16 agree closely.
    const fp32 = join(dir, 'plain32.onnx');
    await writeFile(fp32, buildDinov2Onnx({ config: STRESS_TEST_CONFIG, dtype: 'float32' }));
    const [a, b] = [await openSession(fp32, { threads: 1 }), await openSession(fp16, { threads: 1 })];
    const images = await loadImageDir(DEFAULT_HOLDOUT_DIR, { size: 224, limit: 2 });
    const agree = await compareSessions(a, b, images);
    await Promise.all([a.release(), b.release()]);
    expect(agree.images).toBe(2);
    expect(agree.minCosine).toBeGreaterThan(0.99);
    const smooth = await quantizeModel({ input: stress, threads: 1 });
    const int8 = join(dir, 'int8-b.onnx');
    await writeFile(int8, smooth.model);
    const info = await readModelPrecision(int8);
    expect(info).toMatchObject({ precision: 'int8', from: 'metadata' });
    expect(info.metadata['embedpool.source.sha256']).toBe(smooth.source.sha256);
    // Without our metadata the quantized ops still give it away.
    const bare = decodeModel(smooth.model);
    bare.metadataProps = [];
    await writeFile(int8, encodeModel(bare));
    expect(await readModelPrecision(int8)).toMatchObject({ precision: 'int8', from: 'graph' });
  });
});

/**
 * Rewrites every LayerNormalization as the op-by-op form opset < 17 exports have:
 * (x - mean) / sqrt(var + eps) * gamma + beta.
 */
function decomposeLayerNorms(bytes: Uint8Array): Uint8Array {
  const model = decodeModel(bytes);
  const g = model.graph!;
  const nodes: NodeProto[] = [];
  const f32 = (name: string, v: number) => ({
    name,
    dims: [],
    dataType: 1,
    rawData: new Uint8Array(Float32Array.of(v).buffer),
  });
  let i = 0;
  for (const n of g.node ?? []) {
    if (n.opType !== 'LayerNormalization') {
      nodes.push(n);
      continue;
    }
    const [x, gamma, beta] = n.input as [string, string, string];
    const eps = n.attribute!.find((a) => a.name === 'epsilon')!.f!;
    const p = `ln${i++}`;
    g.initializer!.push(f32(`${p}_eps`, eps), f32(`${p}_two`, 2));
    const axes = { name: 'axes', type: 7, ints: [-1] };
    nodes.push(
      { opType: 'ReduceMean', input: [x], output: [`${p}_mean`], attribute: [axes] },
      { opType: 'Sub', input: [x, `${p}_mean`], output: [`${p}_centered`] },
      { opType: 'Pow', input: [`${p}_centered`, `${p}_two`], output: [`${p}_sq`] },
      { opType: 'ReduceMean', input: [`${p}_sq`], output: [`${p}_var`], attribute: [axes] },
      { opType: 'Add', input: [`${p}_var`, `${p}_eps`], output: [`${p}_vareps`] },
      { opType: 'Sqrt', input: [`${p}_vareps`], output: [`${p}_std`] },
      { opType: 'Div', input: [`${p}_centered`, `${p}_std`], output: [`${p}_norm`] },
      { opType: 'Mul', input: [`${p}_norm`, gamma], output: [`${p}_scaled`] },
      { opType: 'Add', input: [`${p}_scaled`, beta], output: [n.output![0]!] },
    );
  }
  g.node = nodes;
  return encodeModel(model);
}
