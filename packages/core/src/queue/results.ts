import type { Redis } from 'ioredis';
import { keys } from './names';

/** Vectors travel as raw little-endian float32: 3 KB per 768-d vector instead of ~8 KB of JSON text. */
export async function writeResult(
  redis: Redis,
  prefix: string,
  jobId: string,
  vectors: Float32Array,
  ttlSeconds: number,
): Promise<void> {
  const buf = Buffer.from(vectors.buffer, vectors.byteOffset, vectors.byteLength);
  await redis.set(keys.result(prefix, jobId), buf, 'EX', ttlSeconds);
}

/** Reads and deletes in one command: a result is delivered once and leaves nothing behind. */
export async function takeResult(redis: Redis, prefix: string, jobId: string): Promise<Float32Array | null> {
  const buf = await redis.getdelBuffer(keys.result(prefix, jobId));
  if (!buf) return null;
  // Copy into an aligned buffer: a Buffer slice may start at an offset that is not a multiple of 4.
  const out = new Float32Array(buf.byteLength / 4);
  new Uint8Array(out.buffer).set(buf);
  return out;
}
