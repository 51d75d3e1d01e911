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

/** How long a claim lasts before its job exists: far longer than creating a job takes. */
const PENDING_CLAIM_TTL_S = 60;

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
const IDEMPOTENCY_CONFIRM = loadLua('idempotency-confirm', import.meta.url);
const IDEMPOTENCY_RELEASE = loadLua('idempotency-release', import.meta.url);

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
   * the same body get the same job id back, and a different body under the same key is refused. The claim
   * holds for `pendingTtlSeconds` only, until `confirmIdempotencyKey` makes it last as long as the job's
   * record: a creator that dies between the claim and its record does not block the key for days.
   */
  async claimIdempotencyKey(
    owner: string,
    key: string,
    bodyHash: string,
    jobId: string,
    pendingTtlSeconds = PENDING_CLAIM_TTL_S,
  ): Promise<{ created: true } | { created: false; jobId: string }> {
    const k = jobKeys.idempotency(this.prefix, owner, key);
    const value = `${bodyHash}:${jobId}`;
    for (;;) {
      const set = await this.redis.set(k, value, 'EX', pendingTtlSeconds, 'NX');
      if (set === 'OK') return { created: true };
      const existing = await this.redis.get(k);
      // Released (or expired) between the two commands: try to claim it again.
      if (!existing) continue;
      const [hash, id] = existing.split(':') as [string, string];
      if (hash !== bodyHash) {
        throw new EmbedpoolError(
          'BAD_REQUEST',
          'Idempotency-Key was already used with a different request body',
        );
      }
      return { created: false, jobId: id };
    }
  }

  /**
   * Claims the key, or waits (up to `waitMs`) for the job of the request that claimed it first: concurrent
   * repeats of one request must all answer with one job. `pending` when that request is still creating its
   * job after the wait (the caller answers 409 with Retry-After); when it gave up, the key is free and this
   * call claims it.
   */
  async resolveIdempotencyKey(
    owner: string,
    key: string,
    bodyHash: string,
    jobId: string,
    opts: { waitMs: number; pollMs?: number },
  ): Promise<{ created: true } | { created: false; record: JobRecord } | { pending: true; jobId: string }> {
    const deadline = Date.now() + opts.waitMs;
    let pollMs = opts.pollMs ?? 20;
    for (;;) {
      const claim = await this.claimIdempotencyKey(owner, key, bodyHash, jobId);
      if (claim.created) return claim;
      const record = await this.get(claim.jobId);
      if (record) return { created: false, record };
      if (Date.now() >= deadline) return { pending: true, jobId: claim.jobId };
      await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(1, deadline - Date.now()))));
      pollMs = Math.min(pollMs * 2, 200);
    }
  }

  /** The job exists: the claim now lasts as long as its record. */
  async confirmIdempotencyKey(owner: string, key: string, bodyHash: string, jobId: string): Promise<void> {
    await this.redis.eval(
      IDEMPOTENCY_CONFIRM,
      1,
      jobKeys.idempotency(this.prefix, owner, key),
      `${bodyHash}:${jobId}`,
      this.ttlSeconds,
    );
  }

  /** Gives the key up, only while it is still this job's claim (a later claimer's stays). */
  async releaseIdempotencyKey(owner: string, key: string, bodyHash: string, jobId: string): Promise<void> {
    await this.redis.eval(
      IDEMPOTENCY_RELEASE,
      1,
      jobKeys.idempotency(this.prefix, owner, key),
      `${bodyHash}:${jobId}`,
    );
  }

  static isFinal(state: JobState): boolean {
    return FINAL_STATES.includes(state);
  }
}
