import { timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { EmbedpoolError } from '../errors';

/**
 * Image bytes sent inline (base64 in a request) never travel through Redis as base64 inside a job's JSON:
 * BullMQ's scripts copy a job's data several times (Lua arguments, the hash, the reply to the worker), so a
 * 200 KB photo cost Redis more CPU than everything else about the job. The API decodes the base64 once and
 * hands the raw bytes over in one of two ways, named in the job by an {@link InlineSource}; each image is then
 * an `{kind: 'inline', offset, length}` slice of them:
 *
 * - `api`: the bytes stay in the API process that holds the waiting /score request, and the worker fetches
 *   them from it over HTTP (GET, with a per-job secret). Redis sees none of them. Used for synchronous
 *   requests when workers can reach the API (`INLINE_HANDOFF_URL`; automatic on a loopback HOST).
 * - `redis`: one binary key per job (all images back to back), written once with SET, read by range, deleted
 *   when the job is done (TTL as the backstop). Used for async jobs, whose accepted images must outlive the
 *   request, and for /score when workers cannot reach the API.
 * - `blob`: the same packed bytes as one blob in the deployment's storage account (JOB_STAGING_CONTAINER),
 *   read by range and deleted when the job is done: async jobs without any image bytes in Redis.
 */
export const inlineSourceSchema = z.discriminatedUnion('via', [
  z.object({ via: z.literal('api'), url: z.string().url(), token: z.string().min(16) }),
  z.object({ via: z.literal('redis'), key: z.string().min(1) }),
  z.object({ via: z.literal('blob'), container: z.string().min(1), name: z.string().min(1) }),
]);
export type InlineSource = z.infer<typeof inlineSourceSchema>;

export const inlineRefSchema = z.object({
  kind: z.literal('inline'),
  offset: z.number().int().min(0),
  length: z.number().int().positive(),
});
export type InlineRef = z.infer<typeof inlineRefSchema>;

/** Bytes already in hand (an inline image after it was read): what the embed pipeline decodes. */
export interface LoadedImage {
  kind: 'bytes';
  bytes: Uint8Array;
}

export const inlineKey = (prefix: string, id: string) => `${prefix}:inline:${id}`;

/** Packs images back to back; returns the buffer and each image's slice. */
export function packImages(images: Uint8Array[]): { buffer: Buffer; refs: InlineRef[] } {
  const total = images.reduce((n, b) => n + b.byteLength, 0);
  const buffer = Buffer.allocUnsafe(total);
  const refs: InlineRef[] = [];
  let offset = 0;
  for (const b of images) {
    buffer.set(b, offset);
    refs.push({ kind: 'inline', offset, length: b.byteLength });
    offset += b.byteLength;
  }
  return { buffer, refs };
}

/**
 * `packImages` of base64 images, decoded straight into the one buffer: no per-image Buffer is allocated,
 * copied and collected (for a 200 KB image, a third of a millisecond of the API's CPU). Either alphabet
 * (standard or URL-safe), padded or not.
 */
export function packBase64(images: string[]): { buffer: Buffer; refs: InlineRef[] } {
  const encodings = images.map((b64) => (b64.includes('-') || b64.includes('_') ? 'base64url' : 'base64'));
  const total = images.reduce((n, b64, i) => n + Buffer.byteLength(b64, encodings[i]), 0);
  const buffer = Buffer.allocUnsafe(total);
  const refs: InlineRef[] = [];
  let offset = 0;
  images.forEach((b64, i) => {
    const length = buffer.write(b64, offset, encodings[i]);
    refs.push({ kind: 'inline', offset, length });
    offset += length;
  });
  // byteLength is exact for well-formed base64; anything it overcounted is cut off.
  return { buffer: offset === total ? buffer : buffer.subarray(0, offset), refs };
}

/** Writes a job's packed images to their Redis key, once. */
export async function storeInline(
  redis: Redis,
  prefix: string,
  id: string,
  buffer: Buffer,
  ttlSeconds: number,
): Promise<InlineSource> {
  const key = inlineKey(prefix, id);
  await redis.set(key, buffer, 'EX', Math.max(1, Math.ceil(ttlSeconds)));
  return { via: 'redis', key };
}

/** Reads and deletes staged blobs (the worker's storage client; kept out of this module's dependencies). */
export interface InlineBlobStore {
  read(container: string, name: string, offset: number, length: number): Promise<Uint8Array>;
  delete(container: string, name: string): Promise<void>;
}

export async function deleteInline(
  redis: Redis,
  source: InlineSource | undefined,
  blobs?: InlineBlobStore,
): Promise<void> {
  if (source?.via === 'redis') await redis.del(source.key);
  else if (source?.via === 'blob' && blobs) await blobs.delete(source.container, source.name);
}

/** The header a worker sends the API's handoff route: the job's secret. */
export const HANDOFF_TOKEN_HEADER = 'x-embedpool-handoff';

export function tokenMatches(expected: string, given: string | undefined): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Staged blobs are read in windows of this many bytes, not one request per image: a storage request costs
 * the worker ~2-3 ms of CPU (the SDK's policies, signing, the HTTP client) whatever its size, as much as a
 * third of decoding the image it fetched. 4 MiB holds ~20 photos of 200 KB.
 */
export const BLOB_READ_WINDOW_BYTES = 4 * 1024 * 1024;

/** One window of a staged blob, kept until every byte of it has been handed out. */
interface Window {
  bytes: Promise<Uint8Array>;
  served: number;
}

/**
 * Worker side: reads the inline images of one job. `api` sources are fetched whole, once (a /score job holds
 * at most MAX_IMAGES_PER_REQUEST images); `redis` sources are read by range, so a 1,000-image job is never
 * in memory at once; `blob` sources by windows of BLOB_READ_WINDOW_BYTES, each dropped once all its images
 * are read (images are packed back to back, so a window is done when its last byte is served).
 */
export class InlineReader {
  private whole: Promise<Uint8Array> | undefined;
  private readonly windows = new Map<number, Window>();

  constructor(
    private readonly source: InlineSource | undefined,
    private readonly redis: Redis,
    private readonly opts: { timeoutMs: number; blobs?: InlineBlobStore; blobWindowBytes?: number },
  ) {}

  async read(ref: InlineRef): Promise<LoadedImage> {
    const { source } = this;
    if (!source) throw new EmbedpoolError('BAD_REQUEST', 'inline image without an inline source in its job');
    let bytes: Uint8Array;
    if (source.via === 'redis') {
      const buf = await this.redis.getrangeBuffer(source.key, ref.offset, ref.offset + ref.length - 1);
      bytes = buf;
    } else if (source.via === 'blob') {
      if (!this.opts.blobs)
        throw new EmbedpoolError(
          'CONFIG_INVALID',
          'images staged in blob storage but no storage is configured',
        );
      try {
        bytes = await this.readBlob(this.opts.blobs, source, ref);
      } catch (err) {
        throw new EmbedpoolError('UNAVAILABLE', `cannot read staged images: ${(err as Error).message}`, {
          cause: err,
        });
      }
    } else {
      this.whole ??= this.fetchWhole(source);
      const all = await this.whole;
      bytes = all.subarray(ref.offset, ref.offset + ref.length);
    }
    // A missing key reads as empty; a short read means the bytes are gone (expired, or the API restarted).
    if (bytes.byteLength !== ref.length) {
      throw new EmbedpoolError('UNAVAILABLE', `inline image bytes are gone (${source.via})`);
    }
    return { kind: 'bytes', bytes };
  }

  /** The ref's bytes out of the windows it spans, each window fetched once. */
  private async readBlob(
    blobs: InlineBlobStore,
    source: { container: string; name: string },
    ref: InlineRef,
  ): Promise<Uint8Array> {
    const size = this.opts.blobWindowBytes ?? BLOB_READ_WINDOW_BYTES;
    const first = Math.floor(ref.offset / size);
    const last = Math.floor((ref.offset + ref.length - 1) / size);
    const parts: Uint8Array[] = [];
    for (let w = first; w <= last; w++) {
      let win = this.windows.get(w);
      if (!win) {
        const bytes = blobs.read(source.container, source.name, w * size, size).catch((err: unknown) => {
          // A failed window is fetched again by the next image that needs it.
          this.windows.delete(w);
          throw err;
        });
        // Unobserved until awaited below; a rejection before then must not crash the process.
        bytes.catch(() => {});
        win = { bytes, served: 0 };
        this.windows.set(w, win);
      }
      const all = await win.bytes;
      const from = Math.max(ref.offset, w * size) - w * size;
      const to = Math.min(ref.offset + ref.length, (w + 1) * size) - w * size;
      parts.push(all.subarray(from, Math.min(to, all.byteLength)));
      win.served += to - from;
      // The last window of the blob is shorter than `size`: done when all it holds has been served.
      if (win.served >= all.byteLength) this.windows.delete(w);
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  private async fetchWhole(source: { url: string; token: string }): Promise<Uint8Array> {
    let res: Response;
    try {
      res = await fetch(source.url, {
        headers: { [HANDOFF_TOKEN_HEADER]: source.token },
        signal: AbortSignal.timeout(this.opts.timeoutMs),
        redirect: 'error',
      });
    } catch (err) {
      throw new EmbedpoolError('UNAVAILABLE', `cannot fetch inline images from the API: ${String(err)}`, {
        cause: err,
      });
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      // 404: the request that held them is over (answered, timed out, or its API restarted).
      throw new EmbedpoolError('UNAVAILABLE', `the API answered ${res.status} for inline images`);
    }
    return new Uint8Array(await res.arrayBuffer());
  }
}
