import { randomBytes } from 'node:crypto';
import {
  HANDOFF_TOKEN_HEADER,
  type ImageRef,
  type InlineSource,
  packBase64,
  storeInline,
  tokenMatches,
} from '@embedpool/core/queue';
import { type Request, type Response, Router } from 'express';
import type { Redis } from 'ioredis';

/**
 * The API's side of inline image handoff (see @embedpool/core/queue inline-images.ts): base64 images of a
 * synchronous request are decoded once here, and their bytes either stay in this process (workers GET them
 * from `/internal/inline/<id>` with the job's secret, so Redis never carries them) or go to Redis as one
 * binary key when workers cannot reach this process.
 */
export class InlineHandoff {
  private readonly held = new Map<string, { buffer: Buffer; token: string }>();
  private baseUrl: string | undefined;

  /** `url`: how workers reach this process (INLINE_HANDOFF_URL), or undefined for Redis. */
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    url?: string,
  ) {
    this.baseUrl = url?.replace(/\/+$/, '');
  }

  /** Called once the server is bound, when workers reach it at its own address (a loopback HOST). */
  useBoundAddress(url: string): void {
    this.baseUrl ??= url;
  }

  get mode(): 'api' | 'redis' {
    return this.baseUrl ? 'api' : 'redis';
  }

  /** Images held right now (bytes requested by workers of live requests). */
  get holding(): number {
    return this.held.size;
  }

  /**
   * Replaces the base64 images of a request with slices of one buffer and says where that buffer is.
   * Returns the refs unchanged (and no source) when no image is inline. `release(id)` when the request is over.
   */
  async stage(
    id: string,
    images: ImageRef[],
    ttlSeconds: number,
  ): Promise<{ images: ImageRef[]; inline?: InlineSource }> {
    if (!images.some((r) => r.kind === 'base64')) return { images };
    const base64: string[] = [];
    const at: number[] = [];
    images.forEach((r, i) => {
      if (r.kind === 'base64') {
        at[i] = base64.length;
        base64.push(r.data);
      }
    });
    const { buffer, refs } = packBase64(base64);
    const out = images.map((r, i) => (r.kind === 'base64' ? refs[at[i]!]! : r));
    if (this.baseUrl) {
      const token = randomBytes(24).toString('base64url');
      this.held.set(id, { buffer, token });
      return { images: out, inline: { via: 'api', url: `${this.baseUrl}/internal/inline/${id}`, token } };
    }
    return { images: out, inline: await storeInline(this.redis, this.prefix, id, buffer, ttlSeconds) };
  }

  /** The request is over: its bytes go (from memory, or their Redis key). */
  async release(id: string, inline: InlineSource | undefined): Promise<void> {
    this.held.delete(id);
    if (inline?.via === 'redis') await this.redis.del(inline.key).catch(() => {});
  }

  /** GET /internal/inline/:id, for workers: outside API auth, guarded by the job's own secret. */
  router(): Router {
    const router = Router();
    router.get('/internal/inline/:id', (req: Request, res: Response) => {
      const entry = this.held.get(String(req.params.id));
      // Unknown id and wrong secret answer alike, so ids cannot be probed.
      if (!entry || !tokenMatches(entry.token, req.get(HANDOFF_TOKEN_HEADER))) {
        res.status(404).json({ error: { code: 'NOT_FOUND', message: 'no such inline images' } });
        return;
      }
      res.status(200).type('application/octet-stream').send(entry.buffer);
    });
    return router;
  }
}
