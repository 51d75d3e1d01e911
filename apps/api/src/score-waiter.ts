import { once } from 'node:events';
import { EmbedpoolError } from '@embedpool/core/errors';
import type { Logger } from '@embedpool/core/logger';
import { createRedis, QUEUES, type RedisSettings } from '@embedpool/core/queue';
import { QueueEvents, QueueKeys } from 'bullmq';
import type { Redis } from 'ioredis';

export type JobOutcome = { status: 'completed'; returnvalue: unknown } | { status: 'failed'; reason: string };

export interface ScoreWaiterOptions {
  /** REDIS_URL, or the config's Redis settings (cluster, Entra). */
  redisUrl: string | RedisSettings;
  prefix: string;
  /** A non-blocking connection, used once to find where the events stream ends before listening. */
  redis: Redis;
  logger: Logger;
  /** Called when a job completes after its waiter gave up: its result key has no reader left. */
  onOrphanCompleted?: (jobId: string) => void;
  /** How long a given-up job is remembered for orphan clean-up. */
  abandonedTtlMs?: number;
}

interface Pending {
  resolve: (outcome: JobOutcome) => void;
  reject: (err: Error) => void;
}

const ABANDONED_PRUNE_AT = 1_000;
const ABANDONED_MAX = 10_000;

/**
 * One BullMQ QueueEvents per process, fanned out to waiting requests through a map keyed by job id:
 * a listener per request would grow the emitter with the load and make every event walk all of them.
 *
 * Listening starts from the stream's current last id rather than BullMQ's default `$`: with `$`, an event
 * written before the first XREAD reaches Redis is silently lost. Once listening, BullMQ keeps the last id
 * it read and ioredis re-sends the pending XREAD after a reconnect, so events written during an outage
 * are still delivered when Redis comes back.
 */
export class ScoreWaiter {
  private readonly pending = new Map<string, Pending>();
  private readonly abandoned = new Map<string, number>();
  private readonly closing = new AbortController();
  private readonly log: Logger;
  private readonly abandonedTtlMs: number;
  private events: QueueEvents | undefined;
  private eventsClient: { status: string } | undefined;
  /** The instance QueueEvents duplicated (cluster, Entra): closed with it. */
  private eventsTemplate: Redis | undefined;
  private readonly started: Promise<void>;
  private markReady: () => void = () => {};
  private readonly readyPromise = new Promise<void>((resolve) => {
    this.markReady = resolve;
  });
  private lastError = '';
  private readonly onRedisReady = () => {
    if (this.lastError !== '') this.log.info('redis connection is back');
    this.lastError = '';
  };

  constructor(private readonly opts: ScoreWaiterOptions) {
    this.log = opts.logger.child({ component: 'score-waiter' });
    // Once Redis is back, the next outage deserves its own log line.
    opts.redis.on('ready', this.onRedisReady);
    this.abandonedTtlMs = opts.abandonedTtlMs ?? 600_000;
    this.started = this.listen();
  }

  /** Resolves once listening (or closed); never rejects. Redis being down only delays it. */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  /** True while completion events can reach this process: listening, on a live connection. */
  get listening(): boolean {
    return this.eventsClient?.status === 'ready';
  }

  get waiting(): number {
    return this.pending.size;
  }

  /** Register BEFORE adding the job: a fast worker may finish before `add` returns. */
  wait(jobId: string): Promise<JobOutcome> {
    if (this.closing.signal.aborted) {
      return Promise.reject(new EmbedpoolError('UNAVAILABLE', 'the API is shutting down'));
    }
    if (this.pending.has(jobId)) throw new Error(`already waiting for job ${jobId}`);
    return new Promise<JobOutcome>((resolve, reject) => {
      this.pending.set(jobId, { resolve, reject });
    });
  }

  /** Stops waiting; a completion that still arrives is reported through `onOrphanCompleted`. */
  abandon(jobId: string): void {
    if (!this.pending.delete(jobId)) return;
    this.abandoned.set(jobId, Date.now() + this.abandonedTtlMs);
    if (this.abandoned.size > ABANDONED_PRUNE_AT) this.pruneAbandoned();
  }

  /** Stops waiting for a job that never reached the queue. */
  discard(jobId: string): void {
    this.pending.delete(jobId);
  }

  async close(): Promise<void> {
    if (this.closing.signal.aborted) return;
    this.closing.abort();
    this.opts.redis.off('ready', this.onRedisReady);
    this.markReady();
    for (const [jobId, p] of this.pending) {
      p.reject(new EmbedpoolError('UNAVAILABLE', `the API shut down while job ${jobId} was running`));
    }
    this.pending.clear();
    await this.started;
    this.eventsTemplate?.disconnect();
    const events = this.events;
    if (!events) return;
    if (this.eventsClient) {
      await events.close().catch(() => {});
    } else {
      // QueueEvents.close() first awaits a connection that never came up; that wait would never end.
      // Closing its connection with `force` disconnects the client and stops its reconnect loop.
      const { connection } = events as unknown as { connection: { close(force: boolean): Promise<void> } };
      await connection.close(true).catch(() => {});
    }
  }

  private async listen(): Promise<void> {
    const eventsKey = new QueueKeys(this.opts.prefix).getKeys(QUEUES.embed).events!;
    const lastEventId = await this.streamTail(eventsKey);
    if (lastEventId === undefined) return;
    // Options, not an instance: BullMQ would duplicate an instance (one idle connection more), and a lazy
    // duplicate whose first connect fails leaves QueueEvents dead for good. Given options, it waits for
    // Redis with the consumer's retry policy for as long as it takes.
    const settings = this.opts.redisUrl;
    // A cluster cannot be described by one server's options, and Entra tokens are refreshed only on
    // connections made by createRedis: those two get an instance.
    const instance =
      typeof settings !== 'string' && (settings.REDIS_CLUSTER || settings.REDIS_AUTH === 'entra');
    const template = createRedis(settings, 'consumer', { lazyConnect: !instance });
    if (instance) this.eventsTemplate = template;
    const events = new QueueEvents(QUEUES.embed, {
      connection: instance ? template : { ...template.options, lazyConnect: false },
      prefix: this.opts.prefix,
      lastEventId,
    });
    this.events = events;
    events.on('error', (err) => this.logConnectionError(err));
    events.on('completed', ({ jobId, returnvalue }) => {
      const p = this.pending.get(jobId);
      if (p) {
        this.pending.delete(jobId);
        p.resolve({ status: 'completed', returnvalue });
      } else if (this.abandoned.delete(jobId)) {
        this.opts.onOrphanCompleted?.(jobId);
      }
    });
    // BullMQ writes `failed` to the stream only once retries are exhausted: this is the final word.
    events.on('failed', ({ jobId, failedReason }) => {
      const p = this.pending.get(jobId);
      if (p) {
        this.pending.delete(jobId);
        p.resolve({ status: 'failed', reason: failedReason });
      } else {
        this.abandoned.delete(jobId);
      }
    });
    events.waitUntilReady().then(
      (client) => {
        this.eventsClient = client as unknown as { status: string };
        this.log.debug({ lastEventId }, 'listening for job events');
        this.markReady();
      },
      (err) => {
        if (!this.closing.signal.aborted) this.log.error({ err }, 'job events listener failed to start');
      },
    );
  }

  /** The id of the stream's last entry ('0-0' when empty); retried until Redis answers or close(). */
  private async streamTail(key: string): Promise<string | undefined> {
    const { redis } = this.opts;
    // A client still connecting refuses commands (no offline queue); wait for it rather than log that as
    // an error on every clean start.
    if (redis.status !== 'ready') {
      const signal = AbortSignal.any([this.closing.signal, AbortSignal.timeout(5_000)]);
      await once(redis, 'ready', { signal }).catch(() => {});
    }
    while (!this.closing.signal.aborted) {
      try {
        const tail = await redis.xrevrange(key, '+', '-', 'COUNT', 1);
        return tail[0]?.[0] ?? '0-0';
      } catch (err) {
        this.logConnectionError(err);
        // Wake on reconnect; the time-out covers a 'ready' that fired between the failure and this wait.
        const signal = AbortSignal.any([this.closing.signal, AbortSignal.timeout(1_000)]);
        await once(redis, 'ready', { signal }).catch(() => {});
      }
    }
    return undefined;
  }

  private logConnectionError(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    // ioredis reports every failed reconnect; one line per distinct error keeps an outage readable.
    if (message === this.lastError || this.closing.signal.aborted) return;
    this.lastError = message;
    this.log.warn({ err: message }, 'job events connection error');
  }

  private pruneAbandoned(): void {
    const now = Date.now();
    for (const [id, expiry] of this.abandoned) if (expiry < now) this.abandoned.delete(id);
    // Insertion order is age order: past the cap, the oldest go first.
    for (const id of this.abandoned.keys()) {
      if (this.abandoned.size <= ABANDONED_MAX) break;
      this.abandoned.delete(id);
    }
  }
}
