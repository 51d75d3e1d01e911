import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger';
import { loadLua } from '../lua';
import { keys } from './names';

/**
 * The marker that tells whether Redis still holds the data this process has been working with. It is
 * written once per "life" of the data (no expiry, one small key) and carries:
 * - `id`: random, new each time the marker had to be written again;
 * - `since`: when this life began (ms since the epoch);
 * - `lostAt` / `previous`: set when a process that knew the previous life found the marker gone, i.e. Redis
 *   came back empty (a restart without persistence, a failover to an empty replica, a FLUSHALL).
 * Ids minted before `lostAt` that have no record cannot be answered for: they are lost, not unknown.
 */
export interface Generation {
  id: string;
  since: number;
  lostAt?: number;
  previous?: string;
}

/** lua/generation-ensure.lua: creates the marker when missing; returns the marker in force. */
const ENSURE = loadLua('generation-ensure', import.meta.url);
/** lua/generation-mark-lost.lua: adds the loss to the marker, only if it is still the one read. */
const MARK_LOST = loadLua('generation-mark-lost', import.meta.url);

function parse(raw: string): Generation | undefined {
  try {
    const g = JSON.parse(raw) as Generation;
    return typeof g.id === 'string' && typeof g.since === 'number' ? g : undefined;
  } catch {
    return undefined;
  }
}

export async function readGeneration(redis: Redis, prefix: string): Promise<Generation | undefined> {
  const raw = await redis.get(keys.generation(prefix));
  return raw ? parse(raw) : undefined;
}

export interface GenerationWatchOptions {
  redis: Redis;
  prefix: string;
  logger: Logger;
  /** Re-checks this often besides every reconnect (a FLUSHALL does not drop connections). */
  intervalMs?: number;
}

/**
 * Checks the marker at start, on every reconnect and every `intervalMs`. When the marker this process knew is
 * gone, Redis lost its data: logged as an error, recorded in the marker for every other process (and for
 * processes started later), and emitted as `lost`.
 */
export class GenerationWatch extends EventEmitter<{ lost: [Generation] }> {
  private known: Generation | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  /** Losses this process saw happen (a process started after a loss reads it from the marker instead). */
  detected = 0;

  constructor(private readonly opts: GenerationWatchOptions) {
    super();
    this.onReady = this.onReady.bind(this);
  }

  /** The marker as last read; undefined until Redis has been reached once. */
  get current(): Generation | undefined {
    return this.known;
  }

  /** When the data this life of Redis started without was lost; undefined when nothing was lost. */
  get lostAt(): number | undefined {
    return this.known?.lostAt;
  }

  start(): this {
    this.opts.redis.on('ready', this.onReady);
    if (this.opts.redis.status === 'ready') this.onReady();
    this.timer = setInterval(this.onReady, this.opts.intervalMs ?? 5_000);
    this.timer.unref();
    return this;
  }

  stop(): void {
    clearInterval(this.timer);
    this.opts.redis.off('ready', this.onReady);
  }

  private onReady(): void {
    if (this.opts.redis.status !== 'ready') return;
    void this.check().catch((err: Error) =>
      this.opts.logger.warn({ err: err.message }, 'could not check the redis data marker'),
    );
  }

  /** One check (concurrent callers share it). */
  check(): Promise<void> {
    this.checking ??= this.checkOnce().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async checkOnce(): Promise<void> {
    const { redis, prefix, logger } = this.opts;
    const key = keys.generation(prefix);
    const before = this.known;
    const now = Date.now();
    const proposal: Generation = {
      id: randomUUID(),
      since: now,
      ...(before ? { lostAt: now, previous: before.id } : {}),
    };
    let raw = (await redis.eval(ENSURE, 1, key, JSON.stringify(proposal))) as string;
    let current = parse(raw);
    if (!current) {
      logger.error({ key }, 'the redis data marker is unreadable; writing a new one');
      raw = JSON.stringify(proposal);
      await redis.set(key, raw);
      current = proposal;
    }
    if (
      before &&
      current.id !== before.id &&
      current.previous !== before.id &&
      current.lostAt === undefined
    ) {
      // Another process re-created the marker without knowing the old one: record the loss for everyone.
      const marked: Generation = { ...current, lostAt: current.since, previous: before.id };
      current = parse((await redis.eval(MARK_LOST, 1, key, raw, JSON.stringify(marked))) as string) ?? marked;
    }
    this.known = current;
    const newlyLost =
      (before && current.id !== before.id) ||
      (!before && current.lostAt !== undefined && this.detected === 0);
    if (before && current.id !== before.id) {
      this.detected++;
      logger.error(
        {
          previous: before.id,
          generation: current.id,
          lostAt: new Date(current.lostAt ?? now).toISOString(),
        },
        'REDIS LOST ITS DATA: jobs, results and ingestions recorded before this moment are gone; ' +
          'their ids answer 410 STATE_LOST. Run `embedpool recover` to list the outputs they left in storage.',
      );
    } else if (!before && current.lostAt !== undefined) {
      logger.warn(
        { generation: current.id, lostAt: new Date(current.lostAt).toISOString() },
        'redis lost its data before this process started; older ids answer 410 STATE_LOST',
      );
    }
    if (newlyLost) this.emit('lost', current);
  }
}

/** Milliseconds since the epoch encoded in a UUIDv7 (RFC 9562); undefined for any other id. */
export function uuidV7Time(id: string): number | undefined {
  const m = /^([0-9a-f]{8})-([0-9a-f]{4})-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i.exec(id);
  return m ? Number.parseInt(m[1]! + m[2]!, 16) : undefined;
}

/**
 * Whether a missing record is lost (410) rather than unknown (404): only when Redis lost its data and the id
 * was minted before that (`createdAt` from the id itself); ids that carry no time count as lost, since nothing
 * can tell them apart.
 */
export function missingIsLost(generation: Generation | undefined, createdAt: number | undefined): boolean {
  const lostAt = generation?.lostAt;
  if (lostAt === undefined) return false;
  return createdAt === undefined || createdAt < lostAt;
}
