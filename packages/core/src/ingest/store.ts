/**
 * IngestionStore: ingestion records and their bookkeeping in Redis. Split by concern: the record's hash
 * layout is record-codec.ts, the failure sets failure-store.ts, the shapes of a planner page and a chunk
 * outcome store-types.ts, the atomic writes lua/*.lua; this file runs them.
 */
import type { Redis } from 'ioredis';
import { HSET_IF_EXISTS, loadLua } from '../lua';
import { failureEntries, readFailurePage } from './failure-store';
import { ingestionKeys, ingestKeys } from './names';
import { decodeIngestionRecord } from './record-codec';
import type {
  BlobFailure,
  CreateIngestionRequest,
  IngestionError,
  IngestionRecord,
  IngestionState,
  RetryNote,
} from './schemas';
import type {
  CheckpointStatus,
  ChunkContext,
  ChunkOutcome,
  CommitStatus,
  PageCheckpoint,
} from './store-types';

// The scripts live in lua/ beside this file (what each takes and returns is said at its top);
// CHECKPOINT and COMMIT start with the shared functions complete_check and refresh_lock.
const CREATE = loadLua('ingest-create', import.meta.url);
const REFRESH_LOCK = loadLua('ingest-refresh-lock', import.meta.url);
const START = loadLua('ingest-start', import.meta.url);
const COMPLETE_CHECK = loadLua('ingest-complete-check', import.meta.url);
const CHECKPOINT = `${COMPLETE_CHECK}${REFRESH_LOCK}${loadLua('ingest-checkpoint', import.meta.url)}`;
const PARK = loadLua('ingest-park', import.meta.url);
const COMMIT = `${COMPLETE_CHECK}${REFRESH_LOCK}${loadLua('ingest-commit', import.meta.url)}`;
const CANCEL = loadLua('ingest-cancel', import.meta.url);
const ABORT = loadLua('ingest-abort', import.meta.url);
const FINISH = loadLua('ingest-finish', import.meta.url);
const RETRY = loadLua('ingest-retry', import.meta.url);

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
    return Object.keys(hash).length === 0 ? null : decodeIngestionRecord(hash);
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
      if (!err && hash && Object.keys(hash).length > 0) items.push(decodeIngestionRecord(hash));
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
    await this.redis.eval(HSET_IF_EXISTS, 1, this.key(id), 'retrying', JSON.stringify(retry));
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
    const keys = {
      names: ingestKeys.retrySnapshot(this.prefix, id, round),
      info: ingestKeys.retrySnapshotInfo(this.prefix, id, round),
    };
    return readFailurePage(this.redis, keys, after, limit);
  }

  /** Failures in name order, `limit` after `cursor` (the last name of the previous page). */
  async failures(id: string, opts: { cursor?: string; limit: number }): Promise<BlobFailure[]> {
    const keys = {
      names: ingestKeys.failures(this.prefix, id),
      info: ingestKeys.failureInfo(this.prefix, id),
    };
    return readFailurePage(this.redis, keys, opts.cursor, opts.limit);
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
    await this.redis.eval(HSET_IF_EXISTS, 1, this.key(id), 'callback', JSON.stringify(state));
  }

  /** Deletes everything of an ingestion (tests and tooling; a finished one also expires by itself). */
  async purge(record: IngestionRecord): Promise<void> {
    await this.redis.del(...ingestionKeys(this.prefix, record.id, record.round));
    await this.redis.zrem(ingestKeys.all(this.prefix), record.id);
  }
}
