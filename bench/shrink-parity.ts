/**
 * JPEG shrink-on-load against exact decoding on the parity fixture: for every image, the embedding of the
 * small parity model (test/fixtures/dinov2-parity) with `shrinkOnLoad` on and off, their cosine, and each
 * one's cosine to the PyTorch reference. `node --import tsx bench/shrink-parity.ts`
 */
import { readFileSync } from 'node:fs';
import { Engine } from '@embedpool/core/engine';
import { preprocess } from '@embedpool/core/preprocess';
import { cosine, PARITY_MODEL, parityImages } from '@embedpool/testkit';
import sharp from 'sharp';

const engine = await Engine.load({ modelPath: PARITY_MODEL, runtime: { intraOpThreads: 1 } });
const embed = async (pixels: Float32Array) => (await engine.infer(pixels, 1, 224, 224)).embeddings;
let worst = 1;
for (const img of parityImages()) {
  const bytes = readFileSync(img.path);
  const meta = await sharp(bytes).metadata();
  const exact = await embed(await preprocess(bytes, { shrinkOnLoad: false }));
  const shrunk = await embed(await preprocess(bytes, { shrinkOnLoad: true }));
  const c = cosine(exact, shrunk);
  worst = Math.min(worst, c);
  const ref = img.reference;
  process.stdout.write(
    `${img.name.padEnd(28)} ${meta.format?.padEnd(5)} ${meta.width}x${meta.height}`.padEnd(52) +
      ` shrink vs exact ${c.toFixed(6)}` +
      (ref
        ? `  to reference: exact ${cosine(exact, ref).toFixed(6)} shrink ${cosine(shrunk, ref).toFixed(6)}`
        : '') +
      '\n',
  );
}
process.stdout.write(`worst cosine shrink vs exact: ${worst.toFixed(6)}\n`);
await engine.close();
