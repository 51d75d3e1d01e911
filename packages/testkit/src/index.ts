import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root, found from this file so tests work from any working directory. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** The DINOv2 parity fixture, kept in the repository so a clone from anywhere can run the tests. */
export const PARITY_DIR = join(REPO_ROOT, 'test/fixtures/dinov2-parity');
export const PARITY_MODEL = join(PARITY_DIR, 'model/model.onnx');
export const PARITY_CONFIG = join(PARITY_DIR, 'model/config.json');
export const PARITY_WEIGHTS = join(PARITY_DIR, 'model/model.safetensors');

export interface ParityReference {
  model: string;
  dim: number;
  decode_only: string[];
  embeddings: Record<string, number[]>;
}

export function loadParityReference(): ParityReference {
  return JSON.parse(readFileSync(join(PARITY_DIR, 'reference.json'), 'utf8')) as ParityReference;
}

/** Every image in the fixture, with its reference vector where one exists. */
export function parityImages(): { name: string; path: string; reference: number[] | undefined }[] {
  const ref = loadParityReference();
  const names = [...new Set([...Object.keys(ref.embeddings), ...ref.decode_only])].sort();
  return names.map((name) => ({
    name,
    path: join(PARITY_DIR, 'images', name),
    reference: ref.decode_only.includes(name) ? undefined : ref.embeddings[name],
  }));
}

export function parityPixelValues(name: string): Float32Array {
  const buf = readFileSync(join(PARITY_DIR, 'pixel_values', `${name}.f32`));
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return dot / Math.sqrt(na * nb);
}

export function assertSharedFixtures(): void {
  if (!existsSync(PARITY_MODEL)) {
    throw new Error(`parity fixture not found at ${PARITY_DIR}`);
  }
}

export * from './image-encoders';
export { freePort, PrivateRedis } from './private-redis';

/** Photos of one scene in every format the service decodes (see test/fixtures/formats/README.md). */
export const FORMATS_DIR = join(REPO_ROOT, 'test/fixtures/formats');
export { readyRedis } from './ready-redis';
export { PrivateRedisCluster } from './redis-cluster';
