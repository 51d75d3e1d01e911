import { readFileSync } from 'node:fs';
import { parityImages } from '@embedpool/testkit';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import {
  DINOV2_PREPROCESSOR_CONFIG,
  hwcToChwInto,
  normalizeTable,
  outputFloats,
  parsePreprocessorConfig,
  planGeometry,
  preprocess,
  preprocessInto,
  resampleRegion,
} from '.';

const FLOATS = 3 * 224 * 224;
const fixture = (name: string) => readFileSync(parityImages().find((i) => i.name === name)!.path);

/** Index of the first difference, or -1 (faster than toEqual on 150k-element arrays). */
function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

function mad(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}

/** Pillow-exact reference pipeline in JS from a sharp full decode (alpha dropped), for any config. */
async function referenceTensor(bytes: Buffer, config = DINOV2_PREPROCESSOR_CONFIG): Promise<Float32Array> {
  const { data, info } = await sharp(bytes, { autoOrient: true, ignoreIcc: true })
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  const g = planGeometry(config, { width: info.width, height: info.height });
  const px = resampleRegion(data, info, 3, g.resized, g.region, config.resample);
  const out = new Float32Array(3 * g.region.width * g.region.height);
  hwcToChwInto(px, 3, g.region.width * g.region.height, normalizeTable(config), out, 0);
  return out;
}

describe('preprocessInto', () => {
  it('writes exactly its slice of a batch buffer and nothing else', async () => {
    const bytes = fixture('grace_hopper.jpg');
    const batch = new Float32Array(3 * FLOATS + 5).fill(-7);
    const info = await preprocessInto(bytes, batch, FLOATS + 2, {});
    expect(info).toMatchObject({ channels: 3, height: 224, width: 224, floats: FLOATS });
    const alone = await preprocess(bytes);
    expect(firstDifference(batch.subarray(FLOATS + 2, 2 * FLOATS + 2), alone)).toBe(-1);
    for (const [from, to] of [
      [0, FLOATS + 2],
      [2 * FLOATS + 2, batch.length],
    ] as const) {
      expect(batch.subarray(from, to).every((v) => v === -7)).toBe(true);
    }
  });

  it('rejects a bad offset or a buffer without room (caller bugs) before decoding', async () => {
    const bytes = fixture('grace_hopper.jpg');
    await expect(preprocessInto(bytes, new Float32Array(FLOATS), 1)).rejects.toThrow(RangeError);
    await expect(preprocessInto(bytes, new Float32Array(FLOATS), -1)).rejects.toThrow(RangeError);
    await expect(preprocessInto(bytes, new Float32Array(FLOATS), 0.5)).rejects.toThrow(RangeError);
    expect(outputFloats()).toBe(FLOATS);
  });

  it('concurrent calls fill a batch identically to sequential ones', async () => {
    const names = ['china.jpg', 'hopper.webp', 'present_rgba.png', 'flower_red_16bit_gray.png'];
    const batch = new Float32Array(names.length * FLOATS);
    await Promise.all(names.map((n, i) => preprocessInto(fixture(n), batch, i * FLOATS)));
    for (const [i, n] of names.entries()) {
      expect(
        firstDifference(batch.subarray(i * FLOATS, (i + 1) * FLOATS), await preprocess(fixture(n))),
        n,
      ).toBe(-1);
    }
  });
});

describe('preprocessor config drives the geometry', () => {
  it('shortest_edge 128 + crop 112 gives [3,112,112] close to the Pillow pipeline', async () => {
    const config = parsePreprocessorConfig({
      size: { shortest_edge: 128 },
      crop_size: { height: 112, width: 112 },
    });
    for (const name of ['china.jpg', 'present_rgba.png', 'hopper_tiny_16.png']) {
      const out = new Float32Array(3 * 112 * 112 + 3);
      const info = await preprocessInto(fixture(name), out, 3, { config });
      expect(info).toMatchObject({ height: 112, width: 112, floats: 3 * 112 * 112 });
      expect(mad(out.subarray(3), await referenceTensor(fixture(name), config)), name).toBeLessThan(0.02);
    }
    expect(outputFloats({ config })).toBe(3 * 112 * 112);
  });

  it('non-square crop and height/width resize', async () => {
    const config = parsePreprocessorConfig({
      size: { height: 200, width: 300 },
      crop_size: { height: 150, width: 250 },
    });
    const t = await preprocess(fixture('grace_hopper.jpg'), { config });
    expect(t.length).toBe(3 * 150 * 250);
    expect(mad(t, await referenceTensor(fixture('grace_hopper.jpg'), config))).toBeLessThan(0.02);
  });

  it('without center crop the tensor is the resized image', async () => {
    const config = parsePreprocessorConfig({ do_center_crop: false });
    expect(outputFloats({ config })).toBeUndefined();
    const t = await preprocess(fixture('china.jpg'), { config });
    expect(t.length).toBe(3 * 383 * 256);
    expect(mad(t, await referenceTensor(fixture('china.jpg'), config))).toBeLessThan(0.02);
  });

  it('a crop larger than the image is zero-padded before normalization (HF center_crop)', async () => {
    const config = parsePreprocessorConfig({
      size: { shortest_edge: 64 },
      crop_size: { height: 80, width: 100 },
    });
    const table = normalizeTable(config);
    for (const name of ['china.jpg', 'present_rgba.png']) {
      // china: 95x64 resized, so 3 px of zeros left, 2 right, 8 top and bottom.
      const t = await preprocess(fixture(name), { config });
      expect(t.length).toBe(3 * 80 * 100);
      expect(mad(t, await referenceTensor(fixture(name), config)), name).toBeLessThan(0.02);
      expect(t[0]).toBe(table[0]);
      expect(t[2 * 8000 + 79 * 100 + 99]).toBe(table[512]);
    }
  });

  it('resample 2 (bilinear) and 1 (lanczos) stay close to Pillow', async () => {
    for (const resample of [1, 2] as const) {
      const config = parsePreprocessorConfig({ resample });
      for (const name of ['china.jpg', 'hopper_tiny_16.png']) {
        const t = await preprocess(fixture(name), { config });
        expect(mad(t, await referenceTensor(fixture(name), config)), `${name} ${resample}`).toBeLessThan(
          0.03,
        );
      }
    }
  });
});

describe('decoding details', () => {
  // An asymmetric test card: gradients plus a bright block in one corner.
  function card(width: number, height: number): Buffer {
    const px = Buffer.alloc(width * height * 3);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const o = (y * width + x) * 3;
        px[o] = (x * 255) / width;
        px[o + 1] = (y * 255) / height;
        px[o + 2] = x < width / 4 && y < height / 3 ? 250 : 20;
      }
    }
    return px;
  }

  it('applies all eight EXIF orientations', async () => {
    const [w, h] = [600, 380];
    const raw = card(w, h);
    for (let orientation = 1; orientation <= 8; orientation++) {
      const tagged = await sharp(raw, { raw: { width: w, height: h, channels: 3 } })
        .png()
        .withMetadata({ orientation })
        .toBuffer();
      // The same picture with the orientation applied to the pixels and no tag.
      const upright = await sharp(tagged, { autoOrient: true }).png().toBuffer();
      const a = await preprocess(tagged);
      const b = await preprocess(upright);
      expect(mad(a, b), `orientation ${orientation}`).toBeLessThan(0.01);
    }
  });

  it('drops alpha without premultiplying: colour under transparent pixels survives resizing', async () => {
    const table = normalizeTable(DINOV2_PREPROCESSOR_CONFIG);
    for (const [w, h] of [
      [600, 400], // downscale: two-pass sharp path
      [100, 90], // upscale: exact path
    ] as const) {
      const px = Buffer.alloc(w * h * 4);
      for (let i = 0; i < w * h; i++) px.set([200, 50, 10, (i * 97) % 256], i * 4);
      const png = await sharp(px, { raw: { width: w, height: h, channels: 4 } })
        .png()
        .toBuffer();
      const t = await preprocess(png);
      const plane = 224 * 224;
      expect(t.subarray(0, plane).every((v) => v === table[200])).toBe(true);
      expect(t.subarray(plane, 2 * plane).every((v) => v === table[256 + 50])).toBe(true);
      expect(t.subarray(2 * plane).every((v) => v === table[512 + 10])).toBe(true);
    }
  });

  it('scales 16-bit samples as round(v / 257), not v >> 8', async () => {
    const v = 128 * 257 + 128; // round(v / 257) = 128, v >> 8 = 129
    const words = new Uint16Array(300 * 300).fill(v);
    const png = await sharp(words, { raw: { width: 300, height: 300, channels: 1 } })
      .toColourspace('grey16')
      .png()
      .toBuffer();
    expect((await sharp(png).metadata()).depth).toBe('ushort');
    const table = normalizeTable(DINOV2_PREPROCESSOR_CONFIG);
    const t = await preprocess(png);
    expect(t[0]).toBe(table[128]);
    expect(t[224 * 224 + 5]).toBe(table[256 + 128]);
    expect(t.every((x, i) => x === table[Math.floor(i / (224 * 224)) * 256 + 128])).toBe(true);
  });

  it('decodes JPEG, PNG, WebP, GIF, TIFF and AVIF', async () => {
    const { data, info } = await sharp(fixture('grace_hopper.jpg'))
      .raw()
      .toBuffer({ resolveWithObject: true });
    const base = () => sharp(data, { raw: { width: info.width, height: info.height, channels: 3 } });
    const png = await base().png().toBuffer();
    const expected = await preprocess(png);
    const encoded: [string, Buffer, number][] = [
      ['jpeg', await base().jpeg({ quality: 95 }).toBuffer(), 0.03],
      ['webp', await base().webp({ lossless: true }).toBuffer(), 1e-6],
      ['gif', await base().gif().toBuffer(), 0.1],
      ['tiff', await base().tiff({ compression: 'lzw' }).toBuffer(), 1e-6],
      ['heif', await base().avif({ quality: 90, effort: 0 }).toBuffer(), 0.05],
    ];
    for (const [format, bytes, tolerance] of encoded) {
      const out = new Float32Array(FLOATS);
      const got = await preprocessInto(bytes, out, 0);
      expect(got.source.format).toBe(format);
      expect(mad(out, expected), format).toBeLessThan(tolerance);
    }
  });

  it('decodes only the first frame of an animation', async () => {
    const frame = (colour: string) =>
      sharp({ create: { width: 300, height: 300, channels: 3, background: colour } })
        .raw()
        .toBuffer();
    const frames = Buffer.concat([await frame('#ff0000'), await frame('#0000ff')]);
    const gif = await sharp(frames, { raw: { width: 300, height: 600, channels: 3, pageHeight: 300 } })
      .gif()
      .toBuffer();
    const webp = await sharp(frames, { raw: { width: 300, height: 600, channels: 3, pageHeight: 300 } })
      .webp({ lossless: true })
      .toBuffer();
    const table = normalizeTable(DINOV2_PREPROCESSOR_CONFIG);
    for (const bytes of [gif, webp]) {
      const out = new Float32Array(FLOATS);
      const info = await preprocessInto(bytes, out, 0);
      expect(info.source.pages).toBe(2);
      expect(info.source.height).toBe(300);
      expect(out[0]).toBeCloseTo(table[255]!, 1);
      expect(out[2 * 224 * 224]).toBeCloseTo(table[512]!, 1);
    }
  });
});
