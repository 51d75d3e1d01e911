import { readFileSync } from 'node:fs';
import {
  assertSharedFixtures,
  cosine,
  loadParityReference,
  PARITY_MODEL,
  parityImages,
  parityPixelValues,
} from '@embedpool/testkit';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preprocess, preprocessInto } from '.';

/**
 * Parity with the Hugging Face / Pillow reference on the shared fixture: the tensor itself (mean absolute
 * difference against `pixel_values/NAME.f32`) and the fixture model's `pooler_output` (cosine against
 * `reference.json`). Also measures the `shrinkOnLoad` speed option against the same references.
 */

const FLOATS = 3 * 224 * 224;
const images = parityImages();
const reference = loadParityReference();
let session: ort.InferenceSession;

function mad(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}

async function embed(batch: Float32Array, n: number): Promise<Float32Array[]> {
  const out = await session.run({ pixel_values: new ort.Tensor('float32', batch, [n, 3, 224, 224]) });
  const pooled = out.pooler_output!;
  const dim = pooled.dims[1]!;
  const data = pooled.data as Float32Array;
  return Array.from({ length: n }, (_, i) => data.slice(i * dim, (i + 1) * dim));
}

const rows: { name: string; shrink: boolean; path: string; mad: number; cos: number }[] = [];

beforeAll(async () => {
  assertSharedFixtures();
  session = await ort.InferenceSession.create(PARITY_MODEL);
});

afterAll(async () => {
  await session?.release();
  const table = rows.map((r) => ({
    image: r.name,
    shrinkOnLoad: r.shrink,
    path: r.path,
    mad: Number(r.mad.toFixed(5)),
    cosine: Number(r.cos.toFixed(6)),
  }));
  if (process.env.PREPROCESS_PARITY_TABLE) console.table(table);
});

describe.each([false, true])('parity with the reference (shrinkOnLoad: %s)', (shrinkOnLoad) => {
  it('every fixture image: tensor MAD <= 0.03 and embedding cosine >= 0.999 (decode_only: finite)', async () => {
    // One batch buffer, filled concurrently, embedded in one run: exercises preprocessInto as a worker would.
    const batch = new Float32Array(images.length * FLOATS);
    const infos = await Promise.all(
      images.map((img, i) => preprocessInto(readFileSync(img.path), batch, i * FLOATS, { shrinkOnLoad })),
    );
    const vectors = await embed(batch, images.length);
    images.forEach((img, i) => {
      const tensor = batch.subarray(i * FLOATS, (i + 1) * FLOATS);
      expect(infos[i]).toMatchObject({ channels: 3, height: 224, width: 224, floats: FLOATS });
      expect(tensor.every(Number.isFinite), img.name).toBe(true);
      expect(vectors[i]!.every(Number.isFinite), img.name).toBe(true);
      const d = mad(tensor, parityPixelValues(img.name));
      const refVector = img.reference ?? reference.embeddings[img.name];
      const c = refVector ? cosine(vectors[i]!, refVector) : Number.NaN;
      rows.push({ name: img.name, shrink: shrinkOnLoad, path: infos[i]!.path, mad: d, cos: c });
      if (img.reference) {
        // shrinkOnLoad is a speed option: WebP scale-on-load measures ~0.027 here, so it gets more room.
        expect(d, `${img.name} MAD`).toBeLessThanOrEqual(shrinkOnLoad ? 0.05 : 0.03);
        expect(c, `${img.name} cosine`).toBeGreaterThanOrEqual(0.999);
      }
    });
  });
});

describe('fixture specifics', () => {
  it('upscaled images (16x16, RGBA 128x128 and 560x120) match Pillow exactly', async () => {
    for (const name of ['hopper_tiny_16.png', 'present_rgba.png', 'logo_wide_rgba.png']) {
      const img = images.find((i) => i.name === name)!;
      const t = await preprocess(readFileSync(img.path));
      expect(mad(t, parityPixelValues(name)), name).toBeLessThan(1e-6);
    }
  });

  it('CMYK (decode_only) converts like Pillow, without colour management', async () => {
    expect(reference.decode_only).toContain('hopper_cmyk.jpg');
    const img = images.find((i) => i.name === 'hopper_cmyk.jpg')!;
    const t = await preprocess(readFileSync(img.path));
    expect(mad(t, parityPixelValues(img.name))).toBeLessThanOrEqual(0.03);
  });

  it('reports the source: EXIF orientation, animation frames, 16-bit, alpha', async () => {
    const info = async (name: string) => {
      const out = new Float32Array(FLOATS);
      return preprocessInto(readFileSync(images.find((i) => i.name === name)!.path), out, 0);
    };
    expect((await info('flower_exif_rot6.jpg')).source).toMatchObject({
      orientation: 6,
      width: 640,
      height: 427,
    });
    expect((await info('hopper_anim.gif')).source).toMatchObject({ format: 'gif', pages: 2 });
    expect((await info('flower_red_16bit_gray.png')).source).toMatchObject({ depth: 'ushort' });
    expect(await info('present_rgba.png')).toMatchObject({ path: 'exact', source: { hasAlpha: true } });
    expect(await info('china_large_3000x2000.jpg')).toMatchObject({
      path: 'sharp',
      resized: { width: 384, height: 256 },
    });
  });
});
