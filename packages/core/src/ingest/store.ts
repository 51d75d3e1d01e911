import type { Redis } from 'ioredis';
import { ingestionKeys, ingestKeys } from './names';
import {
  type BlobFailure,
  blobFailureSchema,
  type CreateIngestionRequest,
  type IngestionError,
  type IngestionRecord,
  type IngestionState,
  ingestionRecordSchema,
  type PlanCheckpoint,
  type RetryNote,
} from './schemas';

const JSON_FIELDS = ['request', 'checkpoint', 'baseIndex', 'error', 'callback', 'retrying'] as const;
const BOOL_FIELDS = ['listingDone', 'cancelRequested', 'plannerParked'] as const;
const NUMBER_FIELDS = [
  'createdAt',
  'startedAt',
  'finishedAt',
  'updatedAt',
  'round',
  'run',
  'dim',
  'planned',
  'committed',
  'finalizedRound',
  'discovered',
  'skipped',
  'queued',
  'done',
  'failed',
  'carried',
  'cancelledBlobs',
  'missing',
  'bytes',
  'listCalls',
] as const;

function decode(hash: Record<string, string>): IngestionRecord {
  const raw: Record<string, unknown> = { ...hash };
  for (const f of JSON_FIELDS) if (hash[f] !== undefined && hash[f] !== '') raw[f] = JSON.parse(hash[f]);
  for (const f of JSON_FIELDS) if (hash[f] === '') delete raw[f];
  for (const f of NUMBER_FIELDS) if (hash[f] !== undefined) raw[f] = Number(hash[f]);
  for (const f of BOOL_FIELDS) raw[f] = hash[f] === '1';
  return ingestionRecordSchema.parse(raw);
}

// Creates the record and takes the output's lock in one step (a lock whose holder's record is gone is
// stale and taken over). KEYS: record, all, lock, holder's record (when the lock is held).
// ARGV: id, lock ttl (s), record key prefix, then field/value pairs. Returns {'ok'} or {'locked', holder}.
const CREATE = `
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[1] then
  if (not KEYS[4]) or KEYS[4] ~= ARGV[3] .. holder or redis.call('EXISTS', KEYS[4]) == 1 then
    return {'locked', holder}
  end
end
redis.call('SET', KEYS[3], ARGV[1], 'EX', tonumber(ARGV[2]))
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return {'ok'}
`;

// Keeps the output's lock while the ingestion works (it is taken for JOB_TTL_S at a time).
const REFRESH_LOCK = `
local function refresh_lock(lock, id, ttl)
  if redis.call('GET', lock) == id then redis.call('EXPIRE', lock, tonumber(ttl)) end
end
`;

// The planner starts (or resumes) a round-0 listing: plan fields are set once. KEYS: record.
// ARGV: now, then field/value pairs. Returns the state.
const START = `
local s = redis.call('HGET', KEYS[1], 'state')
if not s then return 'missing' end
if redis.call('HEXISTS', KEYS[1], 'run') == 0 then
  for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
if s == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'startedAt', ARGV[1], 'updatedAt', ARGV[1])
  return 'running'
end
return s
`;

// Shared by CHECKPOINT and COMMIT: the round is complete when listing is done and every chunk committed.
// Answers 1 again while the state is 'finalizing', so a caller that died before queueing the finalize job
// (or whose add failed) queues it on its retry; the job id dedupes. 'queued' counts too: planning that
// fails before the ingestion started (a model mismatch, storage refusing) must still reach a final state.
const COMPLETE_CHECK = `
local function complete_check(rec)
  local v = redis.call('HMGET', rec, 'state', 'listingDone', 'planned', 'committed')
  if v[1] == 'finalizing' then return 1 end
  if v[2] == '1' and tonumber(v[4] or '0') >= tonumber(v[3] or '0') and (v[1] == 'running' or v[1] == 'cancelling' or v[1] == 'queued') then
    redis.call('HSET', rec, 'state', 'finalizing')
    return 1
  end
  return 0
end
`;

// One planner page, atomically: checkpoint, counters, carried failures, completion.
// KEYS: record, failures, failinfo, retry snapshot, retry snapshot info, lock.
// ARGV: round, page, checkpoint JSON, planned, d.discovered, d.skipped, d.queued, d.missing, listingDone,
//       now, carried JSON [[name, info], ...], error JSON or '', id, lock ttl, restore-from ('' or a
//       ZRANGEBYLEX min: a retry round that stops early puts the failures it did not queue back).
// Returns {status, complete}; status 'conflict' when the page was already committed (a replay or a
// second planner), 'stale' for another round, 'done' when listing had already finished.
const CHECKPOINT = `${COMPLETE_CHECK}${REFRESH_LOCK}
local rec = KEYS[1]
local st = redis.call('HMGET', rec, 'state', 'round', 'ckptPage', 'listingDone')
if not st[1] then return {'missing', 0} end
if tonumber(st[2] or '0') ~= tonumber(ARGV[1]) then return {'stale', 0} end
if st[4] == '1' then return {'done', complete_check(rec)} end
if tonumber(ARGV[2]) ~= tonumber(st[3] or '0') + 1 then return {'conflict', 0} end
redis.call('HSET', rec, 'ckptPage', ARGV[2], 'checkpoint', ARGV[3], 'planned', ARGV[4], 'updatedAt', ARGV[10])
redis.call('HDEL', rec, 'retrying')
redis.call('HINCRBY', rec, 'discovered', tonumber(ARGV[5]))
redis.call('HINCRBY', rec, 'skipped', tonumber(ARGV[6]))
redis.call('HINCRBY', rec, 'queued', tonumber(ARGV[7]))
redis.call('HINCRBY', rec, 'missing', tonumber(ARGV[8]))
local carried = cjson.decode(ARGV[11])
local added = 0
local carriedAdded = 0
for _, f in ipairs(carried) do
  local n = redis.call('ZADD', KEYS[2], 0, f[1])
  added = added + n
  -- A third element 0: a failure of this run found while planning (a bad manifest line), not carried.
  if f[3] ~= 0 then carriedAdded = carriedAdded + n end
  redis.call('HSET', KEYS[3], f[1], f[2])
end
if added > 0 then redis.call('HINCRBY', rec, 'failed', added) end
if carriedAdded > 0 then redis.call('HINCRBY', rec, 'carried', carriedAdded) end
if ARGV[12] ~= '' then redis.call('HSET', rec, 'error', ARGV[12]) end
refresh_lock(KEYS[6], ARGV[13], ARGV[14])
if ARGV[15] ~= '' then
  local back = redis.call('ZRANGEBYLEX', KEYS[4], ARGV[15], '+')
  local n = 0
  for _, name in ipairs(back) do
    n = n + redis.call('ZADD', KEYS[2], 0, name)
    local info = redis.call('HGET', KEYS[5], name)
    if info then redis.call('HSET', KEYS[3], name, info) end
  end
  redis.call('HINCRBY', rec, 'failed', n)
  redis.call('HINCRBY', rec, 'queued', -n)
end
if ARGV[9] == '1' then
  redis.call('HSET', rec, 'listingDone', '1')
  redis.call('DEL', KEYS[4], KEYS[5])
end
return {'ok', complete_check(rec)}
`;

// Parks the planner when too many chunks wait. KEYS: record. ARGV: max queued chunks. Returns 1 if parked.
const PARK = `
local v = redis.call('HMGET', KEYS[1], 'planned', 'committed')
if tonumber(v[1] or '0') - tonumber(v[2] or '0') > tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'plannerParked', '1')
  return 1
end
return 0
`;

// A chunk's outcome, counted once (the committed bitmap), with its failures and a throughput sample.
// KEYS: record, committed bitmap, written bitmap, failures, failinfo, throughput, lock.
// ARGV: round, seq, blobs, done, bytes, written (0/1), cancelled (0/1), now, wake threshold,
//       failures JSON [[name, info], ...], throughput member, id, lock ttl.
// Returns {status ('ok'|'dup'|'stale'|'missing'), complete, wake}.
const COMMIT = `${COMPLETE_CHECK}${REFRESH_LOCK}
local rec = KEYS[1]
local st = redis.call('HMGET', rec, 'state', 'round')
if not st[1] then return {'missing', 0, 0} end
if tonumber(st[2] or '0') ~= tonumber(ARGV[1]) then return {'stale', 0, 0} end
local status = 'dup'
if redis.call('SETBIT', KEYS[2], tonumber(ARGV[2]), 1) == 0 then
  status = 'ok'
  redis.call('HINCRBY', rec, 'committed', 1)
  local n = tonumber(ARGV[3])
  redis.call('HINCRBY', rec, 'queued', -n)
  if ARGV[7] == '1' then
    redis.call('HINCRBY', rec, 'cancelledBlobs', n)
  else
    local done = tonumber(ARGV[4])
    redis.call('HINCRBY', rec, 'done', done)
    redis.call('HINCRBY', rec, 'bytes', tonumber(ARGV[5]))
    local added = 0
    for _, f in ipairs(cjson.decode(ARGV[10])) do
      added = added + redis.call('ZADD', KEYS[4], 0, f[1])
      redis.call('HSET', KEYS[5], f[1], f[2])
    end
    if added > 0 then redis.call('HINCRBY', rec, 'failed', added) end
    if ARGV[6] == '1' then redis.call('SETBIT', KEYS[3], tonumber(ARGV[2]), 1) end
    if done > 0 then
      local now = tonumber(ARGV[8])
      redis.call('ZADD', KEYS[6], now, ARGV[11])
      redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - 120000)
    end
  end
  redis.call('HSET', rec, 'updatedAt', ARGV[8])
  redis.call('HDEL', rec, 'retrying')
  refresh_lock(KEYS[7], ARGV[12], ARGV[13])
end
local complete = complete_check(rec)
local wake = 0
local v = redis.call('HMGET', rec, 'plannerParked', 'planned', 'committed')
if v[1] == '1' and tonumber(v[2] or '0') - tonumber(v[3] or '0') <= tonumber(ARGV[9]) then
  redis.call('HSET', rec, 'plannerParked', '0')
  wake = 1
end
return {status, complete, wake}
`;

// Cancel works in every state that is not final. queued/running -> cancelling (the planner stops, chunks
// not started are dropped); cancelling and finalizing keep their state and only note the request: FINISH
// then ends the ingestion 'cancelled'. KEYS: record. ARGV: now. Returns {'ok'} or {state}.
const CANCEL = `
local s = redis.call('HGET', KEYS[1], 'state')
if not s then return {'missing'} end
if s == 'queued' or s == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'cancelling', 'cancelRequested', '1', 'updatedAt', ARGV[1])
  return {'ok'}
end
if s == 'cancelling' or s == 'finalizing' then
  redis.call('HSET', KEYS[1], 'cancelRequested', '1', 'updatedAt', ARGV[1])
  return {'ok'}
end
return {s}
`;

// A permanent failure found while the ingestion runs (the output container is gone): it stops as a
// cancel does, and ends 'failed' with the error. KEYS: record. ARGV: now, error JSON. Returns the state.
const ABORT = `
local s = redis.call('HGET', KEYS[1], 'state')
if not s then return 'missing' end
if s == 'queued' or s == 'running' or s == 'cancelling' or s == 'finalizing' then
  if redis.call('HEXISTS', KEYS[1], 'error') == 0 then redis.call('HSET', KEYS[1], 'error', ARGV[2]) end
  if s == 'queued' or s == 'running' then redis.call('HSET', KEYS[1], 'state', 'cancelling') end
  redis.call('HSET', KEYS[1], 'updatedAt', ARGV[1])
end
return s
`;

// finalizing -> a final state, releasing the output's lock and starting the expiry of every key.
// KEYS: record, lock, then keys to expire. ARGV: state, round, now, ttl, id, then field/value pairs.
const FINISH = `
local st = redis.call('HMGET', KEYS[1], 'state', 'round')
if not st[1] then return 'missing' end
if st[1] ~= 'finalizing' then return st[1] end
if tonumber(st[2] or '0') ~= tonumber(ARGV[2]) then return 'stale' end
-- A cancel that arrived while finalizing wins: what was done is recorded, and the ingestion says cancelled.
local state = ARGV[1]
if redis.call('HGET', KEYS[1], 'cancelRequested') == '1' then state = 'cancelled' end
redis.call('HSET', KEYS[1], 'state', state, 'finishedAt', ARGV[3], 'updatedAt', ARGV[3], 'finalizedRound', ARGV[2])
redis.call('HDEL', KEYS[1], 'retrying')
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if redis.call('GET', KEYS[2]) == ARGV[5] then redis.call('DEL', KEYS[2]) end
for i = 3, #KEYS do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[4])) end
return 'ok'
`;

// Starts a retry round over the current failures. KEYS: record, failures, failinfo, snapshot, snapshot
// info, lock, then keys to persist. ARGV: id, now, lock ttl, new round.
// Returns {'ok', n} | {'state', s} | {'none'} | {'locked', holder}.
const RETRY = `
local st = redis.call('HMGET', KEYS[1], 'state', 'round')
if not st[1] then return {'missing'} end
if st[1] ~= 'completed' and st[1] ~= 'partially_failed' and st[1] ~= 'failed' then return {'state', st[1]} end
if tonumber(st[2] or '0') + 1 ~= tonumber(ARGV[4]) then return {'state', 'stale'} end
local n = redis.call('ZCARD', KEYS[2])
if n == 0 then return {'none'} end
local holder = redis.call('GET', KEYS[6])
if holder and holder ~= ARGV[1] then return {'locked', holder} end
redis.call('SET', KEYS[6], ARGV[1], 'EX', tonumber(ARGV[3]))
redis.call('RENAME', KEYS[2], KEYS[4])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('RENAME', KEYS[3], KEYS[5]) end
redis.call('HSET', KEYS[1], 'state', 'running', 'round', ARGV[4], 'listingDone', '0', 'planned', '0',
  'committed', '0', 'plannerParked', '0', 'ckptPage', '0', 'carried', '0', 'updatedAt', ARGV[2])
redis.call('HDEL', KEYS[1], 'finishedAt', 'checkpoint', 'error')
redis.call('HINCRBY', KEYS[1], 'failed', -n)
redis.call('HINCRBY', KEYS[1], 'queued', n)
for i = 7, #KEYS do redis.call('PERSIST', KEYS[i]) end
redis.call('PERSIST', KEYS[1])
return {'ok', n}
`;

export interface ChunkContext {
  id: string;
  state: IngestionState;
  round: number;
  request: CreateIngestionRequest;
  run: number;
  outputKey: string;
  cancelRequested: boolean;
}

export type CheckpointStatus = 'ok' | 'conflict' | 'stale' | 'done' | 'missing';
export type CommitStatus = 'ok' | 'dup' | 'stale' | 'missing';

export interface PageCheckpoint {
  round: number;
  page: number;
  checkpoint: PlanCheckpoint;
  planned: number;
  discovered?: number;
  skipped?: number;
  queued?: number;
  missing?: number;
  listingDone?: boolean;
  carried?: BlobFailure[];
  /** Failures of this run found while planning (bad manifest lines): counted as failed, not carried. */
  failures?: BlobFailure[];
  error?: IngestionError;
  /**
   * A retry round stopping early puts the failures it did not queue back: the snapshot's names from `name`
   * on (all of them without a name).
   */
  restoreFrom?: { name?: string; inclusive?: boolean };
}

export interface ChunkOutcome {
  round: number;
  seq: number;
  blobs: number;
  done: number;
  bytes: number;
  /** The chunk left a shard or an index file (rows or permanent failures). */
  written: boolean;
  cancelled: boolean;
  failures: BlobFailure[];
  /** Wake the planner when this few chunks (or fewer) remain queued. */
  wakeBelow: number;
  chunk: string;
}

function failureEntries(failures: readonly BlobFailure[], carried = 1): string {
  return JSON.stringify(failures.map((f) => [f.name, JSON.stringify(f), carried]));
}

/**
 * Ingestion records and their bookkeeping in Redis. Every write that must be counted once (a planner page,
 * a chunk's outcome) is one Lua script guarded by a sequence number or a bitmap bit, so a replay after a
 * crash changes nothing; a chunk costs one script call however many images it has.
 */
export class IngestionStore {
  constructor(
    readonly redis: Redis,
    readonly prefix: string,
    /** How long a finished ingestion (record, failures) is kept. */
    readonly ttlSeconds: number,
  ) {}

  private key(id: string) {
    return ingestKeys.record(this.prefix, id);
  }

  /** Creates a queued ingestion holding its output's lock; `locked` names the ingestion holding it. */
  async create(init: {
    id: string;
    request: CreateIngestionRequest;
    outputKey: string;
    createdAt: number;
  }): Promise<{ created: true } | { created: false; holder: string }> {
    const fields: (string | number)[] = [
      'id',
      init.id,
      'state',
      'queued',
      'createdAt',
      init.createdAt,
      'updatedAt',
      init.createdAt,
      'request',
      JSON.stringify(init.request),
      'outputKey',
      init.outputKey,
      'round',
      0,
      'finalizedRound',
      -1,
    ];
    const lock = ingestKeys.outputLock(this.prefix, init.outputKey);
    const holder = await this.redis.get(lock);
    const res = (await this.redis.eval(
      CREATE,
      holder ? 4 : 3,
      this.key(init.id),
      ingestKeys.all(this.prefix),
      lock,
      ...(holder ? [this.key(holder)] : []),
      init.id,
      this.ttlSeconds,
      this.key(''),
      ...fields,
    )) as [string, string?];
    return res[0] === 'ok' ? { created: true } : { created: false, holder: res[1]! };
  }

  async get(id: string): Promise<IngestionRecord | null> {
    const hash = await this.redis.hgetall(this.key(id));
    return Object.keys(hash).length === 0 ? null : decode(hash);
  }

  /**
   * What a chunk needs of its ingestion, without the planner's checkpoint (a chunk's worth of names): one
   * HMGET per chunk.
   */
  async chunkContext(id: string): Promise<ChunkContext | null> {
    const [state, round, request, run, key, cancel] = await this.redis.hmget(
      this.key(id),
      'state',
      'round',
      'request',
      'run',
      'outputKey',
      'cancelRequested',
    );
    if (!state || !request || !key) return null;
    return {
      id,
      state: state as IngestionState,
      round: Number(round ?? 0),
      request: JSON.parse(request) as CreateIngestionRequest,
      run: Number(run ?? 0),
      outputKey: key,
      cancelRequested: cancel === '1',
    };
  }

  /** Newest first; `cursor` is the last id of the previous page. */
  async list(opts: { cursor?: string; limit: number }): Promise<{ items: IngestionRecord[]; next?: string }> {
    const all = ingestKeys.all(this.prefix);
    const ids = await this.redis.zrevrangebylex(
      all,
      opts.cursor ? `(${opts.cursor}` : '+',
      '-',
      'LIMIT',
      0,
      opts.limit,
    );
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(this.key(id));
    const res = ((await pipe.exec()) ?? []) as [Error | null, Record<string, string>][];
    const items: IngestionRecord[] = [];
    const gone: string[] = [];
    res.forEach(([err, hash], i) => {
      if (!err && hash && Object.keys(hash).length > 0) items.push(decode(hash));
      else gone.push(ids[i]!);
    });
    // Expired records leave their id behind: drop it now.
    if (gone.length) await this.redis.zrem(all, ...gone);
    return { items, ...(ids.length === opts.limit ? { next: ids[ids.length - 1] } : {}) };
  }

  /** Sets what planning decided (once) and moves queued -> running. Returns the state. */
  async start(
    id: string,
    plan: { run: number; model: string; dim: number; baseIndex?: { name: string; etag?: string } },
  ): Promise<IngestionState | 'missing'> {
    const fields: (string | number)[] = ['run', plan.run, 'model', plan.model, 'dim', plan.dim];
    if (plan.baseIndex) fields.push('baseIndex', JSON.stringify(plan.baseIndex));
    return (await this.redis.eval(START, 1, this.key(id), Date.now(), ...fields)) as
      | IngestionState
      | 'missing';
  }

  /** Commits one planner page (or the end of planning); see CHECKPOINT. */
  async checkpoint(
    record: Pick<IngestionRecord, 'id' | 'outputKey'>,
    c: PageCheckpoint,
  ): Promise<{ status: CheckpointStatus; complete: boolean }> {
    const p = this.prefix;
    const id = record.id;
    const res = (await this.redis.eval(
      CHECKPOINT,
      6,
      this.key(id),
      ingestKeys.failures(p, id),
      ingestKeys.failureInfo(p, id),
      ingestKeys.retrySnapshot(p, id, c.round),
      ingestKeys.retrySnapshotInfo(p, id, c.round),
      ingestKeys.outputLock(p, record.outputKey),
      c.round,
      c.page,
      JSON.stringify(c.checkpoint),
      c.planned,
      c.discovered ?? 0,
      c.skipped ?? 0,
      c.queued ?? 0,
      c.missing ?? 0,
      c.listingDone ? '1' : '0',
      Date.now(),
      JSON.stringify([
        ...JSON.parse(failureEntries(c.carried ?? [], 1)),
        ...JSON.parse(failureEntries(c.failures ?? [], 0)),
      ]),
      c.error ? JSON.stringify(c.error) : '',
      id,
      this.ttlSeconds,
      c.restoreFrom === undefined
        ? ''
        : c.restoreFrom.name === undefined
          ? '-'
          : `${c.restoreFrom.inclusive ? '[' : '('}${c.restoreFrom.name}`,
    )) as [CheckpointStatus, number];
    return { status: res[0], complete: res[1] === 1 };
  }

  /** One more listing request (counted whether or not its page gets committed). */
  async countListCall(id: string): Promise<void> {
    await this.redis.hincrby(this.key(id), 'listCalls', 1);
  }

  /** True when the planner should park: more than `maxQueued` chunks wait. */
  async park(id: string, maxQueued: number): Promise<boolean> {
    return (await this.redis.eval(PARK, 1, this.key(id), maxQueued)) === 1;
  }

  async commitChunk(
    record: Pick<IngestionRecord, 'id' | 'outputKey'>,
    o: ChunkOutcome,
  ): Promise<{ status: CommitStatus; complete: boolean; wake: boolean }> {
    const p = this.prefix;
    const id = record.id;
    const now = Date.now();
    const res = (await this.redis.eval(
      COMMIT,
      7,
      this.key(id),
      ingestKeys.committed(p, id, o.round),
      ingestKeys.written(p, id, o.round),
      ingestKeys.failures(p, id),
      ingestKeys.failureInfo(p, id),
      ingestKeys.throughput(p, id),
      ingestKeys.outputLock(p, record.outputKey),
      o.round,
      o.seq,
      o.blobs,
      o.done,
      o.bytes,
      o.written ? '1' : '0',
      o.cancelled ? '1' : '0',
      now,
      o.wakeBelow,
      failureEntries(o.failures),
      `${o.chunk}:${o.done}`,
      id,
      this.ttlSeconds,
    )) as [CommitStatus, number, number];
    return { status: res[0], complete: res[1] === 1, wake: res[2] === 1 };
  }

  async isCommitted(id: string, round: number, seq: number): Promise<boolean> {
    return (await this.redis.getbit(ingestKeys.committed(this.prefix, id, round), seq)) === 1;
  }

  /** The chunk seqs of a round that left output (a shard or permanent failures), in order. */
  async writtenChunks(id: string, round: number): Promise<number[]> {
    const buf = await this.redis.getBuffer(ingestKeys.written(this.prefix, id, round));
    const out: number[] = [];
    if (!buf) return out;
    for (let byte = 0; byte < buf.length; byte++) {
      const v = buf[byte]!;
      if (v === 0) continue;
      for (let bit = 0; bit < 8; bit++) if (v & (0x80 >> bit)) out.push(byte * 8 + bit);
    }
    return out;
  }

  /** Any state that is not final -> (eventually) cancelled; otherwise the state that blocked it. */
  async requestCancel(id: string): Promise<'ok' | IngestionState | 'missing'> {
    const res = (await this.redis.eval(CANCEL, 1, this.key(id), Date.now())) as [string];
    return res[0] as 'ok' | IngestionState | 'missing';
  }

  /** Stops a running ingestion for a permanent error: it ends `failed` with it (see ABORT). */
  async abort(id: string, error: IngestionError): Promise<IngestionState | 'missing'> {
    return (await this.redis.eval(ABORT, 1, this.key(id), Date.now(), JSON.stringify(error))) as
      | IngestionState
      | 'missing';
  }

  /**
   * Notes a transient failure that is being retried (shown as `retrying` in the state until the next
   * progress clears it), so a slow run says why it is slow.
   */
  async noteRetry(id: string, retry: RetryNote): Promise<void> {
    await this.redis.eval(
      "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'retrying', ARGV[1]) end return 1",
      1,
      this.key(id),
      JSON.stringify(retry),
    );
  }

  async finish(
    record: IngestionRecord,
    outcome: { state: IngestionState; manifest?: string; error?: IngestionError },
  ): Promise<string> {
    const fields: string[] = [];
    if (outcome.manifest) fields.push('manifest', outcome.manifest);
    if (outcome.error) fields.push('error', JSON.stringify(outcome.error));
    const keys = ingestionKeys(this.prefix, record.id, record.round).filter((k) => k !== this.key(record.id));
    return (await this.redis.eval(
      FINISH,
      2 + keys.length + 1,
      this.key(record.id),
      ingestKeys.outputLock(this.prefix, record.outputKey),
      this.key(record.id),
      ...keys,
      outcome.state,
      record.round,
      Date.now(),
      this.ttlSeconds,
      record.id,
      ...fields,
    )) as string;
  }

  /** Moves the failures into a new round; see RETRY. */
  async startRetry(
    record: IngestionRecord,
    lockTtlSeconds: number,
  ): Promise<
    | { status: 'ok'; round: number; blobs: number }
    | { status: 'state'; state: string }
    | { status: 'none' }
    | { status: 'locked'; holder: string }
    | { status: 'missing' }
  > {
    const p = this.prefix;
    const id = record.id;
    const round = record.round + 1;
    const persist = ingestionKeys(p, id, round).filter((k) => k !== this.key(id));
    const res = (await this.redis.eval(
      RETRY,
      6 + persist.length,
      this.key(id),
      ingestKeys.failures(p, id),
      ingestKeys.failureInfo(p, id),
      ingestKeys.retrySnapshot(p, id, round),
      ingestKeys.retrySnapshotInfo(p, id, round),
      ingestKeys.outputLock(p, record.outputKey),
      ...persist,
      id,
      Date.now(),
      lockTtlSeconds,
      round,
    )) as [string, string | number | undefined];
    switch (res[0]) {
      case 'ok':
        return { status: 'ok', round, blobs: Number(res[1]) };
      case 'state':
        return { status: 'state', state: String(res[1]) };
      case 'locked':
        return { status: 'locked', holder: String(res[1]) };
      case 'none':
        return { status: 'none' };
      default:
        return { status: 'missing' };
    }
  }

  /** A page of a retry round's snapshot: names after `after`, with their failure details. */
  async retryPage(
    id: string,
    round: number,
    after: string | undefined,
    limit: number,
  ): Promise<BlobFailure[]> {
    const snap = ingestKeys.retrySnapshot(this.prefix, id, round);
    const names = await this.redis.zrangebylex(
      snap,
      after === undefined ? '-' : `(${after}`,
      '+',
      'LIMIT',
      0,
      limit,
    );
    if (names.length === 0) return [];
    const infos = await this.redis.hmget(ingestKeys.retrySnapshotInfo(this.prefix, id, round), ...names);
    return names.map((name, i) => parseFailure(name, infos[i] ?? null));
  }

  /** Failures in name order, `limit` after `cursor` (the last name of the previous page). */
  async failures(id: string, opts: { cursor?: string; limit: number }): Promise<BlobFailure[]> {
    const names = await this.redis.zrangebylex(
      ingestKeys.failures(this.prefix, id),
      opts.cursor === undefined ? '-' : `(${opts.cursor}`,
      '+',
      'LIMIT',
      0,
      opts.limit,
    );
    if (names.length === 0) return [];
    const infos = await this.redis.hmget(ingestKeys.failureInfo(this.prefix, id), ...names);
    return names.map((name, i) => parseFailure(name, infos[i] ?? null));
  }

  /** Images done in the last `windowMs` (from the per-chunk samples). */
  async recentDone(id: string, windowMs = 60_000, now = Date.now()): Promise<number> {
    const members = await this.redis.zrangebyscore(
      ingestKeys.throughput(this.prefix, id),
      now - windowMs,
      '+inf',
    );
    let sum = 0;
    for (const m of members) sum += Number(m.slice(m.lastIndexOf(':') + 1)) || 0;
    return sum;
  }

  async setCallback(id: string, state: IngestionRecord['callback']): Promise<void> {
    await this.redis.eval(
      "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'callback', ARGV[1]) end return 1",
      1,
      this.key(id),
      JSON.stringify(state),
    );
  }

  /** Deletes everything of an ingestion (tests and tooling; a finished one also expires by itself). */
  async purge(record: IngestionRecord): Promise<void> {
    await this.redis.del(...ingestionKeys(this.prefix, record.id, record.round));
    await this.redis.zrem(ingestKeys.all(this.prefix), record.id);
  }
}

function parseFailure(name: string, info: string | null): BlobFailure {
  if (info) {
    const parsed = blobFailureSchema.safeParse(JSON.parse(info));
    if (parsed.success) return parsed.data;
  }
  return { name, etag: '', size: 0, code: 'UNKNOWN', message: 'details expired', permanent: false, at: 0 };
}
