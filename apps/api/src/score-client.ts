import { decodeJobFailure, EmbedpoolError } from '@embedpool/core/errors';
import type { Logger } from '@embedpool/core/logger';
import {
  type ImageRef,
  type InlineSource,
  type ScoreQueue,
  type ScoreResult,
  scoreResultSchema,
  takeResult,
} from '@embedpool/core/queue';
import type { Redis } from 'ioredis';
import type { InlineHandoff } from './inline-handoff';
import { type CoalescerOptions, ScoreCoalescer } from './score-coalescer';
import type { ScoreWaiter } from './score-waiter';

export interface ScoreClientOptions {
  queue: ScoreQueue;
  /** The producer connection (no offline queue): a command fails at once while Redis is away. */
  redis: Redis;
  waiter: ScoreWaiter;
  prefix: string;
  /** Base64 images leave as raw bytes, held here or in one Redis key, never as base64 inside the job. */
  handoff?: InlineHandoff;
  /** Concurrent requests share one queue job (see score-coalescer.ts); absent or 0 ms: one job each. */
  coalesce?: CoalescerOptions;
}

export interface ScoreCall {
  /** A fresh uuid: the job id and the job's requestId. Never a client-chosen value (see routes/score.ts). */
  jobId: string;
  timeoutMs: number;
  /** Aborted when the client goes away: the job is cancelled, and the call rejects with the signal's reason. */
  signal?: AbortSignal;
  log: Logger;
}

export interface ScoreAnswer {
  result: ScoreResult;
  /** count * dim float32, row-major; empty when any image failed (the answer is then the failure list). */
  vectors: Float32Array;
}

const EMPTY = new Float32Array(0);

/** Enqueues one score job and waits for its result, within the request's deadline, never longer. */
export class ScoreClient {
  private readonly coalescer: ScoreCoalescer | undefined;

  constructor(private readonly opts: ScoreClientOptions) {
    if (opts.coalesce && opts.coalesce.windowMs > 0)
      this.coalescer = new ScoreCoalescer((images, call) => this.scoreJob(images, call), opts.coalesce);
  }

  score(images: ImageRef[], call: ScoreCall): Promise<ScoreAnswer> {
    return this.coalescer ? this.coalescer.score(images, call) : this.scoreJob(images, call);
  }

  /** One queue job for these images, waited for within the call's deadline. */
  async scoreJob(images: ImageRef[], call: ScoreCall): Promise<ScoreAnswer> {
    const { handoff, redis, waiter } = this.opts;
    call.signal?.throwIfAborted();
    if (redis.status !== 'ready') throw unavailable(`redis is unreachable (${redis.status})`);
    if (!waiter.listening) throw unavailable('not listening for job events (redis connection not ready)');
    if (!handoff) return this.scoreStaged(images, undefined, call);
    let staged: Awaited<ReturnType<InlineHandoff['stage']>>;
    try {
      staged = await handoff.stage(call.jobId, images, Math.ceil(call.timeoutMs / 1000) + 5);
    } catch (err) {
      throw unavailable(`could not stage inline images: ${(err as Error).message}`, err);
    }
    try {
      return await this.scoreStaged(staged.images, staged.inline, call);
    } finally {
      await handoff.release(call.jobId, staged.inline);
    }
  }

  private async scoreStaged(
    images: ImageRef[],
    inline: InlineSource | undefined,
    call: ScoreCall,
  ): Promise<ScoreAnswer> {
    const { queue, redis, waiter } = this.opts;
    const { jobId, log, signal } = call;
    signal?.throwIfAborted();
    // Checked up front: BullMQ waits for a connection that is not ready instead of failing.
    if (redis.status !== 'ready') throw unavailable(`redis is unreachable (${redis.status})`);
    if (!waiter.listening) throw unavailable('not listening for job events (redis connection not ready)');

    const deadline = Date.now() + call.timeoutMs;
    const outcome = waiter.wait(jobId);
    // Settled by the time-out or abort paths below; an unobserved rejection must not crash the process.
    outcome.catch(() => {});
    const race = new DeadlineRace(deadline, call.timeoutMs, signal);
    try {
      const added = await race.run(
        queue.add({ requestId: jobId, images, deadline, normalize: false, ...(inline ? { inline } : {}) }),
      );
      if (added !== 'done') {
        waiter.discard(jobId);
        // The add may still land after we stopped waiting for it; cancel whatever made it into Redis.
        await this.cancel(jobId, log, added);
        throw race.error(added);
      }
    } catch (err) {
      waiter.discard(jobId);
      race.clear();
      throw err;
    }

    const first = await race.run(outcome).finally(() => race.clear());
    if (first !== 'done') {
      waiter.abandon(jobId);
      await this.cancel(jobId, log, first);
      throw race.error(first);
    }
    const done = await outcome;
    if (done.status === 'failed') {
      // A worker's refusal with a code (a payload it cannot read, a deadline passed) keeps that code and its
      // HTTP status; a failure without one (a crash, a thrown library error) is the model run's.
      const refused = decodeJobFailure(done.reason);
      if (refused) throw new EmbedpoolError(refused.code, `the worker refused the job: ${refused.message}`);
      throw new EmbedpoolError('INFERENCE_FAILED', `scoring failed in the worker: ${done.reason}`);
    }
    return this.collect(jobId, images.length, done.returnvalue, log);
  }

  private async collect(jobId: string, n: number, returnvalue: unknown, log: Logger): Promise<ScoreAnswer> {
    const parsed = scoreResultSchema.safeParse(returnvalue);
    if (!parsed.success) {
      log.error({ jobId, issues: parsed.error.issues }, 'worker returned a malformed score result');
      throw new EmbedpoolError('INTERNAL', 'malformed score result');
    }
    const result = parsed.data;
    let vectors: Float32Array | null;
    try {
      // Taken even when the answer is a failure list: GETDEL leaves nothing behind for the TTL to reap.
      vectors = await takeResult(this.opts.redis, this.opts.prefix, jobId);
    } catch (err) {
      throw unavailable(`could not read the result: ${(err as Error).message}`, err);
    }
    if (result.failures.length > 0) {
      // The rows that did succeed stay readable: a coalesced job answers several requests.
      const whole = vectors !== null && vectors.length === result.count * result.dim;
      return { result, vectors: whole && vectors ? vectors : EMPTY };
    }
    if (result.count !== n || vectors === null || vectors.length !== result.count * result.dim) {
      log.error(
        { jobId, images: n, count: result.count, dim: result.dim, floats: vectors?.length ?? null },
        'score result does not match its request',
      );
      throw new EmbedpoolError('INTERNAL', 'score result is missing or inconsistent');
    }
    return { result, vectors };
  }

  private async cancel(jobId: string, log: Logger, why: 'timeout' | 'aborted'): Promise<void> {
    try {
      const how = await this.opts.queue.cancel(jobId);
      log.info({ jobId, why, how }, 'score job cancelled');
    } catch (err) {
      log.warn({ jobId, why, err }, 'could not cancel score job');
    }
  }
}

function unavailable(message: string, cause?: unknown): EmbedpoolError {
  return new EmbedpoolError('UNAVAILABLE', message, cause === undefined ? undefined : { cause });
}

/** Races promises against one deadline and an abort signal, with one timer for the whole call. */
class DeadlineRace {
  private timer: NodeJS.Timeout | undefined;
  private readonly expired: Promise<'timeout'>;
  private readonly aborted: Promise<'aborted'>;
  private onAbort: (() => void) | undefined;

  constructor(
    deadline: number,
    private readonly timeoutMs: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.expired = new Promise((resolve) => {
      this.timer = setTimeout(() => resolve('timeout'), Math.max(0, deadline - Date.now()));
    });
    this.aborted = new Promise((resolve) => {
      if (!signal) return;
      this.onAbort = () => resolve('aborted');
      signal.addEventListener('abort', this.onAbort, { once: true });
    });
  }

  async run(p: Promise<unknown>): Promise<'done' | 'timeout' | 'aborted'> {
    return Promise.race([p.then(() => 'done' as const), this.expired, this.aborted]);
  }

  error(why: 'timeout' | 'aborted'): unknown {
    if (why === 'aborted') return this.signal?.reason ?? new Error('aborted');
    return new EmbedpoolError('TIMEOUT', `no answer within ${this.timeoutMs} ms; the job was cancelled`);
  }

  clear(): void {
    clearTimeout(this.timer);
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
  }
}
