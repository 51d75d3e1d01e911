import { keys } from '@embedpool/core/queue';
import type { Request, RequestHandler, Response } from 'express';
import type { Redis } from 'ioredis';
import { refuse } from '../auth/respond';

/** How long one reading of the backlog stands in for Redis (admissions in between are counted here). */
const SNAPSHOT_MS = 200;
/** Retry-After of a full backlog: a few seconds of draining before asking again. */
export const OVERLOAD_RETRY_AFTER_S = 5;

interface Pending {
  images: number;
  /** The reading epoch current when its request ended; undefined while the request runs. */
  closedIn?: number;
}

/**
 * MAX_BACKLOG_IMAGES: images waiting in the queue (all replicas; the backlog hash jobId -> images that the
 * queues keep, as `backlogImages` reads it), beyond which new work is refused instead of growing Redis
 * without bound. The hash is read at most every 200 ms. Work this process admitted is counted on top of
 * the reading until a reading sees its job (it landed) or a reading that began after its request ended
 * does not (it finished, or never landed), so a burst between two readings cannot overshoot the limit
 * from one replica; several replicas can overshoot by what the others admit within 200 ms.
 */
export class BacklogGate {
  private images = 0;
  private readAt = Number.NEGATIVE_INFINITY;
  private epoch = 0;
  private reading: Promise<void> | undefined;
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    readonly limit: number,
  ) {}

  private refresh(): Promise<void> {
    this.reading ??= (async () => {
      const started = ++this.epoch;
      try {
        const hash = await this.redis.hgetall(keys.backlog(this.prefix));
        let images = 0;
        for (const v of Object.values(hash)) images += Number(v) || 0;
        this.images = images;
        for (const [jobId, p] of this.pending) {
          if (jobId in hash || (p.closedIn !== undefined && p.closedIn < started)) this.pending.delete(jobId);
        }
        this.readAt = Date.now();
      } finally {
        this.reading = undefined;
      }
    })();
    return this.reading;
  }

  /** Images believed waiting now: the last reading plus this process's admissions it cannot include yet. */
  async estimate(): Promise<number> {
    if (Date.now() - this.readAt > SNAPSHOT_MS) await this.refresh();
    let pending = 0;
    for (const p of this.pending.values()) pending += p.images;
    return this.images + pending;
  }

  /**
   * Admits job `jobId` with `n` images, or says how many wait. A request bigger than the whole limit
   * still passes when nothing waits, so it is served rather than refused forever. `done` must be called
   * when the request that enqueues it has ended (its enqueue has landed or failed by then).
   */
  async admit(
    jobId: string,
    n: number,
  ): Promise<{ ok: true; done: () => void } | { ok: false; waiting: number }> {
    let waiting: number;
    try {
      waiting = await this.estimate();
    } catch {
      // Redis unreachable: the enqueue that follows answers 503 on its own.
      return { ok: true, done: () => {} };
    }
    if (waiting > 0 && waiting + n > this.limit) return { ok: false, waiting };
    const entry: Pending = { images: n };
    this.pending.set(jobId, entry);
    return {
      ok: true,
      done: () => {
        entry.closedIn = this.epoch;
      },
    };
  }
}

type Admit = (jobId: string, n: number) => Promise<boolean>;

/** Makes `admitImages` in the routes consult the gate (a no-op while no gate is installed). */
export function backlogGuard(gate: BacklogGate | undefined): RequestHandler {
  return (req, res, next) => {
    if (gate) {
      const admit: Admit = async (jobId, n) => {
        const d = await gate.admit(jobId, n);
        if (d.ok) {
          if (res.closed) d.done();
          else res.once('close', d.done);
          return true;
        }
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
 * Called by a route once it knows the job id and how many images it brings, before enqueueing anything.
 * False means the route must stop: the request has been answered (429, Retry-After), or its client has
 * already gone (while the body was read), so no work is queued for nobody.
 */
export async function admitImages(_req: Request, res: Response, jobId: string, n: number): Promise<boolean> {
  const admit = res.locals.admitImages as Admit | undefined;
  const ok = admit ? await admit(jobId, n) : true;
  return ok && !res.closed;
}
