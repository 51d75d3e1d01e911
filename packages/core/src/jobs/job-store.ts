import type { Redis } from 'ioredis';
import { EmbedpoolError } from '../errors';
import { HSET_IF_EXISTS, loadLua } from '../lua';
import {
  type DeliveryState,
  FINAL_STATES,
  type JobLocation,
  type JobOutput,
  type JobRecord,
  type JobState,
  jobRecordSchema,
} from './schemas';

const JSON_FIELDS = ['itemIds', 'output', 'failures', 'location', 'delivery', 'error'] as const;
const NUMBER_FIELDS = [
  'createdAt',
  'startedAt',
  'finishedAt',
  'total',
  'succeeded',
  'failed',
  'dim',
] as const;

// lua/job-transition.lua: Moves a job between states only from an allowed one, atomically with the fields that go with the move.
const TRANSITION = loadLua('job-transition', import.meta.url);

export const jobKeys = {
  record: (prefix: string, id: string) => `${prefix}:job:${id}`,
  result: (prefix: string, id: string) => `${prefix}:jobresult:${id}`,
  idempotency: (prefix: string, owner: string, key: string) => `${prefix}:idem:${owner}:${key}`,
};

function encode(fields: Partial<JobRecord>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    out.push(k, typeof v === 'string' ? v : JSON.stringify(v));
  }
  return out;
}

function decode(hash: Record<string, string>): JobRecord {
  const raw: Record<string, unknown> = { ...hash };
  for (const f of JSON_FIELDS) if (hash[f] !== undefined) raw[f] = JSON.parse(hash[f]);
  for (const f of NUMBER_FIELDS) if (hash[f] !== undefined) raw[f] = Number(hash[f]);
  raw.normalize = hash.normalize === 'true';
  return jobRecordSchema.parse(raw);
}

/**
 * Async job records in Redis. The BullMQ job is transient (removed once done); the record is what callers
 * read for JOB_TTL_S, and every state change goes through one atomic transition so a cancel and a worker
 * finishing at the same moment cannot both win.
 */
export class JobStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
  ) {}

  async create(init: {
    id: string;
    owner?: string;
    itemIds: string[];
    normalize: boolean;
    output: JobOutput;
    createdAt: number;
  }): Promise<void> {
    const key = jobKeys.record(this.prefix, init.id);
    const fields = encode({
      id: init.id,
      state: 'queued',
      createdAt: init.createdAt,
      total: init.itemIds.length,
      succeeded: 0,
      failed: 0,
      itemIds: init.itemIds,
      output: init.output,
      ...(init.owner ? { owner: init.owner } : {}),
    });
    await this.redis
      .multi()
      .hset(key, ...fields, 'normalize', String(init.normalize))
      .expire(key, this.ttlSeconds)
      .exec();
  }

  async get(id: string): Promise<JobRecord | null> {
    const hash = await this.redis.hgetall(jobKeys.record(this.prefix, id));
    return Object.keys(hash).length === 0 ? null : decode(hash);
  }

  /** Returns 'ok', or the state that blocked the move ('missing' when there is no record). */
  async transition(id: string, from: readonly JobState[], to: JobState, fields: Partial<JobRecord> = {}) {
    return (await this.redis.eval(
      TRANSITION,
      1,
      jobKeys.record(this.prefix, id),
      from.join(','),
      to,
      ...encode(fields),
    )) as 'ok' | 'missing' | JobState;
  }

  markRunning(id: string) {
    return this.transition(id, ['queued', 'running'], 'running', { startedAt: Date.now() });
  }

  finish(
    id: string,
    outcome: {
      succeeded: number;
      failed: number;
      failures: JobRecord['failures'];
      location?: JobLocation;
      model: string;
      dim: number;
    },
  ) {
    const state: JobState =
      outcome.succeeded === 0 ? 'failed' : outcome.failed > 0 ? 'partially_failed' : 'completed';
    return this.transition(id, ['queued', 'running'], state, {
      ...outcome,
      finishedAt: Date.now(),
      ...(outcome.succeeded === 0
        ? { error: { code: 'ALL_IMAGES_FAILED', message: 'every image failed' } }
        : {}),
    });
  }

  fail(id: string, error: { code: string; message: string }) {
    return this.transition(id, ['queued', 'running'], 'failed', { error, finishedAt: Date.now() });
  }

  cancel(id: string) {
    return this.transition(id, ['queued'], 'cancelled', { finishedAt: Date.now() });
  }

  async setDelivery(id: string, delivery: DeliveryState): Promise<void> {
    const key = jobKeys.record(this.prefix, id);
    // Only while the record exists: a delivery must not resurrect an expired job as a half-record.
    await this.redis.eval(HSET_IF_EXISTS, 1, key, 'delivery', JSON.stringify(delivery));
  }

  /**
   * Claims an idempotency key for an owner: the first caller gets `{ created: true }`, later callers with
   * the same body get the same job id back, and a different body under the same key is refused.
   */
  async claimIdempotencyKey(
    owner: string,
    key: string,
    bodyHash: string,
    jobId: string,
  ): Promise<{ created: true } | { created: false; jobId: string }> {
    const k = jobKeys.idempotency(this.prefix, owner, key);
    const value = `${bodyHash}:${jobId}`;
    const set = await this.redis.set(k, value, 'EX', this.ttlSeconds, 'NX');
    if (set === 'OK') return { created: true };
    const existing = await this.redis.get(k);
    if (!existing) return this.claimIdempotencyKey(owner, key, bodyHash, jobId);
    const [hash, id] = existing.split(':') as [string, string];
    if (hash !== bodyHash) {
      throw new EmbedpoolError(
        'BAD_REQUEST',
        'Idempotency-Key was already used with a different request body',
      );
    }
    return { created: false, jobId: id };
  }

  async releaseIdempotencyKey(owner: string, key: string): Promise<void> {
    await this.redis.del(jobKeys.idempotency(this.prefix, owner, key));
  }

  static isFinal(state: JobState): boolean {
    return FINAL_STATES.includes(state);
  }
}
