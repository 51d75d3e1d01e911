import { backlogImages } from '@embedpool/core/queue';
import type { Request, RequestHandler, Response } from 'express';
import type { Redis } from 'ioredis';
import { refuse } from '../auth/respond';

/** How long one reading of the backlog stands in for Redis (admissions in between are counted here). */
const SNAPSHOT_MS = 200;
/** Retry-After of a full backlog: a few seconds of draining before asking again. */
export const OVERLOAD_RETRY_AFTER_S = 5;

/**
 * MAX_BACKLOG_IMAGES: images waiting in the queue (all replicas, from the backlog hash the queues keep),
 * beyond which new work is refused instead of growing Redis without bound. The backlog is read at most
 * every 200 ms; images this process admits in between are added to the reading, so a burst arriving
 * between two readings cannot overshoot it (other API replicas can, by at most their own 200 ms worth).
 */
export class BacklogGate {
  private images = 0;
  private readAt = Number.NEGATIVE_INFINITY;
  private admitted = 0;
  private reading: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    readonly limit: number,
  ) {}

  private refresh(): Promise<void> {
    this.reading ??= (async () => {
      // Admissions made while the read is in flight may or may not be in it: keep counting them (safe side).
      const mark = this.admitted;
      try {
        const { images } = await backlogImages(this.redis, this.prefix);
        this.images = images;
        this.admitted -= mark;
        this.readAt = Date.now();
      } finally {
        this.reading = undefined;
      }
    })();
    return this.reading;
  }

  /** Images believed waiting now: the last reading plus what this process admitted since. */
  async estimate(): Promise<number> {
    if (Date.now() - this.readAt > SNAPSHOT_MS) await this.refresh();
    return this.images + this.admitted;
  }

  /**
   * Admits `n` more images, or says how many wait. A request bigger than the whole limit still passes
   * when nothing waits, so it is served rather than refused forever.
   */
  async admit(n: number): Promise<{ ok: true } | { ok: false; waiting: number }> {
    let waiting: number;
    try {
      waiting = await this.estimate();
    } catch {
      // Redis unreachable: the enqueue that follows answers 503 on its own.
      return { ok: true };
    }
    if (waiting > 0 && waiting + n > this.limit) return { ok: false, waiting };
    this.admitted += n;
    return { ok: true };
  }
}

type Admit = (n: number) => Promise<boolean>;

/** Makes `admitImages` in the routes consult the gate (a no-op while no gate is installed). */
export function backlogGuard(gate: BacklogGate | undefined): RequestHandler {
  return (req, res, next) => {
    if (gate) {
      const admit: Admit = async (n) => {
        const d = await gate.admit(n);
        if (d.ok) return true;
        refuse(req, res, {
          status: 429,
          code: 'OVERLOADED',
          message:
            `the service is at capacity: ${d.waiting} images are waiting (limit ${gate.limit}); ` +
            `retry in ${OVERLOAD_RETRY_AFTER_S} s`,
          retryAfterS: OVERLOAD_RETRY_AFTER_S,
        });
        return false;
      };
      res.locals.admitImages = admit;
    }
    next();
  };
}

/**
 * Called by a route once it knows how many images a request brings, before enqueueing anything. False
 * means the request has been answered (429, Retry-After) and the route must stop.
 */
export async function admitImages(_req: Request, res: Response, n: number): Promise<boolean> {
  const admit = res.locals.admitImages as Admit | undefined;
  return admit ? admit(n) : true;
}
