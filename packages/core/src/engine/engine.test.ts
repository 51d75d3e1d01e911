import {
  cosine,
  loadParityReference,
  PARITY_MODEL,
  parityImages,
  parityPixelValues,
} from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbedpoolError } from '../errors';
import { Engine } from './engine';

const SIZE = 3 * 224 * 224;
const ref = loadParityReference();
const compared = parityImages().filter((i) => i.reference);

describe('Engine', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load({ modelPath: PARITY_MODEL, runtime: { intraOpThreads: 1 } });
  });
  afterAll(() => engine.close());

  it('reads the model from the session', () => {
    expect(engine.info).toMatchObject({
      inputName: 'pixel_values',
      inputType: 'float32',
      fixedBatch: null,
      height: 224,
      width: 224,
      outputName: 'pooler_output',
      embeddingFrom: 'pooler_output',
      dim: ref.dim,
    });
    expect(engine.provider).toBe('cpu');
  });

  it('embeds a batch of fixture tensors into the reference vectors and hands the buffer back', async () => {
    const input = new Float32Array(compared.length * SIZE);
    compared.forEach((img, i) => input.set(parityPixelValues(img.name), i * SIZE));
    const r = await engine.infer(input, compared.length, 224, 224);
    expect(input.length).toBe(0); // detached while it travelled
    expect(r.input.length).toBe(compared.length * SIZE);
    expect(r.dim).toBe(ref.dim);
    compared.forEach((img, i) => {
      const v = r.embeddings.subarray(i * r.dim, (i + 1) * r.dim);
      expect(cosine(v, img.reference!)).toBeGreaterThan(0.99999);
      expect(Math.abs(v[0]! - img.reference![0]!)).toBeLessThan(1e-4);
    });
    expect(engine.stats.images).toBeGreaterThanOrEqual(compared.length);
  });

  it('runs batches from many callers concurrently with the same answers as alone', async () => {
    const one = async (name: string) => {
      const buf = new Float32Array(SIZE);
      buf.set(parityPixelValues(name));
      return (await engine.infer(buf, 1, 224, 224)).embeddings;
    };
    const names = compared.slice(0, 4).map((c) => c.name);
    const results = await Promise.all(names.map(one));
    results.forEach((v, i) => expect(cosine(v, ref.embeddings[names[i]!]!)).toBeGreaterThan(0.99999));
  });

  it('rejects an input smaller than the count says', async () => {
    await expect(engine.infer(new Float32Array(10), 1, 224, 224)).rejects.toBeInstanceOf(EmbedpoolError);
  });

  it('keeps the event loop free while a long batch runs', async () => {
    const batch = 96;
    const input = new Float32Array(batch * SIZE);
    const px = parityPixelValues('china.jpg');
    for (let i = 0; i < batch; i++) input.set(px, i * SIZE);
    let last = performance.now();
    let maxGap = 0;
    let ticks = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 10);
    const t0 = performance.now();
    const r = await engine.infer(input, batch, 224, 224);
    const elapsed = performance.now() - t0;
    clearInterval(timer);
    expect(r.embeddings.length).toBe(batch * ref.dim);
    // Meaningful only if the run was long enough to starve a blocked loop of many ticks.
    expect(elapsed).toBeGreaterThan(200);
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(elapsed / 10 / 3));
    // A blocked loop would show one gap as long as the whole run; a free one only scheduling noise, which
    // on a loaded 2-core machine reaches tens of milliseconds: hence a bound relative to the run.
    expect(maxGap).toBeLessThan(Math.min(elapsed / 2, Math.max(100, elapsed / 4)));
  });
});

describe('Engine loading', () => {
  it('falls back to CPU on purpose, with the reason, when CUDA is asked for but missing', async () => {
    const engine = await Engine.load({ modelPath: PARITY_MODEL, runtime: { executionProvider: 'cuda' } });
    try {
      expect(engine.provider).toBe('cpu');
      expect(engine.fallbackReason).toBeTruthy();
    } finally {
      await engine.close();
    }
  });

  it('fails with MODEL_INVALID for a file that is not a model', async () => {
    await expect(Engine.load({ modelPath: new URL(import.meta.url).pathname })).rejects.toMatchObject({
      code: 'MODEL_INVALID',
    });
  });
});
