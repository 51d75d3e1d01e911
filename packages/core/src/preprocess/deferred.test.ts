import { readFileSync } from 'node:fs';
import { parityImages } from '@embedpool/testkit';
import { describe, expect, it } from 'vitest';
import { decodeForModel } from './deferred';
import { preprocess } from './preprocess';

describe('decodeForModel', () => {
  it('writes exactly what preprocess returns, at the offset asked, for every fixture image', async () => {
    for (const img of parityImages()) {
      const bytes = readFileSync(img.path);
      const expected = await preprocess(bytes);
      const decoded = await decodeForModel(bytes);
      expect(decoded.floats).toBe(expected.length);
      const out = new Float32Array(decoded.floats + 10).fill(-99);
      decoded.writeInto(out, 5);
      expect(Array.from(out.subarray(0, 5))).toEqual([-99, -99, -99, -99, -99]);
      expect(out.subarray(5, 5 + decoded.floats)).toEqual(expected);
      expect(out[5 + decoded.floats]).toBe(-99);
    }
  });

  it('refuses a slot that is too small, and bad bytes with the same error as preprocess', async () => {
    const decoded = await decodeForModel(readFileSync(parityImages()[0]!.path));
    expect(() => decoded.writeInto(new Float32Array(decoded.floats - 1), 0)).toThrow(RangeError);
    await expect(decodeForModel(Buffer.from('not an image'))).rejects.toMatchObject({
      code: expect.stringMatching(/^IMAGE_/),
    });
  });
});
