import type { Redis } from 'ioredis';
import { blobAuthFromConfig, blobRetryFromConfig } from '../blob/auth-from-config';
import { type BlobTarget, resolveBlobTarget } from '../blob/blob-client';
import { storageErrorCode, storageStatus } from '../blob/storage-errors';
import type { Config } from '../config';
import { EmbedpoolError } from '../errors';
import type { JobProducer } from '../queue/producer';
import { validateGlob } from './filter';
import { manifestFormat } from './manifest-input';
import { ingestKeys, newIngestionId, OutputLayout, outputKey } from './names';
import { IngestQueues } from './queue';
import {
  type BlobFailure,
  createIngestionRequestSchema,
  type IngestionRecord,
  isFinalIngestionState,
} from './schemas';
import { type IngestSettings, ingestSettingsFrom } from './settings';
import { IngestionStore } from './store';

export interface IngestionServiceOptions {
  redis: Redis;
  config: Config;
  settings?: Partial<IngestSettings>;
  /** The storage account; default: the deployment's (blobAuthFromConfig). */
  blob?: BlobTarget;
  /** The process's job producer (the API's); default: one of the service's own. */
  producer?: JobProducer;
}

/** What GET /v1/ingestions/{id} answers. */
export interface IngestionView {
  id: string;
  state: IngestionRecord['state'];
  run?: number;
  round: number;
  source: IngestionRecord['request']['source'];
  output: IngestionRecord['request']['output'] & { manifest?: string };
  counts: {
    /** Blobs the listing found that pass the filters. */
    discovered: number;
    /** The same as `discovered` (the name the CLI shows). */
    listed: number;
    /** The same as `done`: embedded and written. */
    embedded: number;
    /** Unchanged since an earlier run into the same output: not downloaded. */
    skipped: number;
    /** In chunks that have not finished yet. */
    queued: number;
    /** Embedded and written. */
    done: number;
    /** Failed (see /failures); includes `carriedFailures`. */
    failed: number;
    cancelled: number;
    carriedFailures: number;
    missingFromSource: number;
  };
  listing: { done: boolean; chunksPlanned: number; chunksDone: number; listCalls: number };
  throughput: { imagesPerSecond: number; windowSeconds: number };
  /** Seconds to go at the last minute's rate; a lower bound while the listing is still running. */
  etaSeconds: number | null;
  etaIsLowerBound: boolean;
  bytes: number;
  model?: string;
  dim?: number;
  /** Why the ingestion failed (or is stopping); set once, kept in the final state. */
  error?: { code: string; message: string };
  /** A transient failure being retried with backoff right now; gone at the next progress. */
  retrying?: IngestionRecord['retrying'];
  callback?: IngestionRecord['callback'];
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
}

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

export function ingestionView(record: IngestionRecord, recentDone: number, now = Date.now()): IngestionView {
  const req = record.request;
  const window = record.startedAt ? Math.min(60, Math.max(1, (now - record.startedAt) / 1000)) : 60;
  const final = isFinalIngestionState(record.state);
  const rate = final ? 0 : recentDone / window;
  const queued = Math.max(0, record.queued);
  const layout = new OutputLayout(req.output.prefix);
  return {
    id: record.id,
    state: record.state,
    ...(record.run !== undefined ? { run: record.run } : {}),
    round: record.round,
    source: req.source,
    output: { ...req.output, ...(record.manifest ? { manifest: layout.manifest } : {}) },
    counts: {
      discovered: record.discovered,
      listed: record.discovered,
      embedded: record.done,
      skipped: record.skipped,
      queued,
      done: record.done,
      failed: record.failed,
      cancelled: record.cancelledBlobs,
      carriedFailures: record.carried,
      missingFromSource: record.missing,
    },
    listing: {
      done: record.listingDone,
      chunksPlanned: record.planned,
      chunksDone: record.committed,
      listCalls: record.listCalls,
    },
    throughput: { imagesPerSecond: Math.round(rate * 10) / 10, windowSeconds: Math.round(window) },
    etaSeconds: final ? 0 : rate > 0 ? Math.ceil(queued / rate) : null,
    etaIsLowerBound: !final && !record.listingDone,
    bytes: record.bytes,
    ...(record.model ? { model: record.model, dim: record.dim } : {}),
    ...(record.error ? { error: record.error } : {}),
    ...(record.retrying && !final ? { retrying: record.retrying } : {}),
    ...(record.callback ? { callback: record.callback } : {}),
    createdAt: iso(record.createdAt)!,
    ...(record.startedAt ? { startedAt: iso(record.startedAt) } : {}),
    ...(record.finishedAt ? { finishedAt: iso(record.finishedAt) } : {}),
  };
}

const bad = (message: string) => new EmbedpoolError('BAD_REQUEST', message);

/**
 * The API side of ingestions: validation, the record and lock, the planner job, and the reads, cancels and
 * retries of /v1/ingestions. Workers do everything else (apps/worker/src/ingest).
 */
export class IngestionService {
  readonly store: IngestionStore;
  readonly queues: IngestQueues;
  readonly settings: IngestSettings;
  private readonly target: BlobTarget | undefined;

  constructor(private readonly opts: IngestionServiceOptions) {
    const { config, redis } = opts;
    this.settings = ingestSettingsFrom(config, opts.settings);
    this.store = new IngestionStore(redis, config.QUEUE_PREFIX, config.JOB_TTL_S);
    this.queues = new IngestQueues(redis, {
      prefix: config.QUEUE_PREFIX,
      attempts: this.settings.INGEST_ATTEMPTS,
      backoffMs: this.settings.INGEST_BACKOFF_MS,
      ...(opts.producer ? { producer: opts.producer } : {}),
    });
    const auth = blobAuthFromConfig(config);
    this.target =
      opts.blob ?? (auth ? resolveBlobTarget(auth, { retry: blobRetryFromConfig(config) }) : undefined);
  }

  private checkRedis(): void {
    if (this.opts.redis.status !== 'ready') throw new EmbedpoolError('UNAVAILABLE', 'redis is unreachable');
  }

  async create(body: unknown): Promise<IngestionRecord> {
    const parsed = createIngestionRequestSchema.safeParse(body);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`);
      throw bad(`invalid ingestion request: ${issues.join('; ')}`);
    }
    const request = parsed.data;
    if (request.source.glob) {
      const problem = validateGlob(request.source.glob);
      if (problem) throw bad(`source.glob: ${problem}`);
    }
    if (!this.target) throw bad('ingestion is not available: this deployment has no storage account');
    if (request.callbackUrl && !this.opts.config.CALLBACK_SECRET) {
      throw bad('callbacks are not available: this deployment has no CALLBACK_SECRET');
    }
    const scoped = this.target.container;
    if (scoped && (request.source.container !== scoped || request.output.container !== scoped)) {
      throw bad(`the storage credential only reaches container ${scoped}: source and output must be in it`);
    }
    const manifest = request.source.manifest;
    if (manifest) {
      if (!manifestFormat(manifest.name)) {
        throw bad('source.manifest.name: a manifest is a .jsonl, .ndjson or .csv blob');
      }
      if (scoped && manifest.container && manifest.container !== scoped) {
        throw bad(`the storage credential only reaches container ${scoped}: the manifest must be in it`);
      }
    }
    this.checkRedis();
    await this.checkSource(request.source.container);
    if (manifest) await this.checkManifest(manifest.container ?? request.source.container, manifest.name);

    const id = newIngestionId();
    const key = outputKey(request.output.container, request.output.prefix);
    const created = await this.store.create({ id, request, outputKey: key, createdAt: Date.now() });
    if (!created.created) {
      throw bad(
        `output ${request.output.container}/${request.output.prefix} is being written by ingestion ` +
          `${created.holder}; wait for it or cancel it`,
      );
    }
    try {
      await this.queues.addPlan({ ingestionId: id, round: 0 });
    } catch (err) {
      const record = await this.store.get(id);
      if (record) await this.store.purge(record).catch(() => {});
      await this.opts.redis.del(ingestKeys.outputLock(this.opts.config.QUEUE_PREFIX, key)).catch(() => {});
      throw err;
    }
    return (await this.store.get(id))!;
  }

  /**
   * Fails fast on a source container that does not exist. A credential that may list but not read
   * container properties (some SAS) answers 403 here: that is left for the planner to find out.
   */
  private checkSource(container: string): Promise<void> {
    return this.checkExists(
      this.target!.client.getContainerClient(container),
      `source container ${container} does not exist`,
    );
  }

  /** A manifest that is not there is a 400 now rather than a failed planner later. */
  private checkManifest(container: string, name: string): Promise<void> {
    return this.checkExists(
      this.target!.client.getContainerClient(container).getBlobClient(name),
      `source.manifest: ${container}/${name} does not exist`,
    );
  }

  /** 400 with `missing` when storage says it is not there; 503 when storage cannot be reached. */
  private async checkExists(
    client: { exists(o: { abortSignal: AbortSignal }): Promise<boolean> },
    missing: string,
  ): Promise<void> {
    try {
      const found = await client.exists({ abortSignal: AbortSignal.timeout(15_000) });
      if (!found) throw bad(missing);
    } catch (err) {
      if (err instanceof EmbedpoolError) throw err;
      const status = storageStatus(err);
      if (status !== undefined && status < 500 && status !== 408 && status !== 429) return;
      throw new EmbedpoolError('UNAVAILABLE', `blob storage unreachable: ${storageErrorCode(err) ?? err}`, {
        cause: err,
      });
    }
  }

  async load(id: string): Promise<IngestionRecord> {
    const record = await this.store.get(id);
    if (!record) throw new EmbedpoolError('NOT_FOUND', `no ingestion ${id}`);
    return record;
  }

  async view(record: IngestionRecord): Promise<IngestionView> {
    const recent = isFinalIngestionState(record.state) ? 0 : await this.store.recentDone(record.id);
    return ingestionView(record, recent);
  }

  async list(opts: { cursor?: string; limit: number }) {
    const { items, next } = await this.store.list(opts);
    return { items: await Promise.all(items.map((r) => this.view(r))), ...(next ? { next } : {}) };
  }

  async failures(
    id: string,
    opts: { cursor?: string; limit: number },
  ): Promise<{
    items: BlobFailure[];
    next?: string;
  }> {
    await this.load(id);
    const items = await this.store.failures(id, opts);
    return { items, ...(items.length === opts.limit ? { next: items[items.length - 1]!.name } : {}) };
  }

  /**
   * Stops listing, drops chunks not started, lets running chunks finish, and records what was done (shards,
   * index and manifest), so a later run into the same output picks up where this one stopped.
   */
  async cancel(id: string): Promise<IngestionRecord> {
    const record = await this.load(id);
    const res = await this.store.requestCancel(id);
    if (res === 'missing') throw new EmbedpoolError('NOT_FOUND', `no ingestion ${id}`);
    if (res !== 'ok') {
      throw bad(`ingestion ${id} is already ${res}; there is nothing to cancel`);
    }
    // A planner parked on back-pressure wakes now to record the end of its listing. Its job is queued
    // again too (the same id: a no-op while it exists): a planner lost with its job still gets to end the
    // round, so a cancel always reaches `cancelled`.
    await this.queues.wakePlanner({ ingestionId: id, round: record.round });
    await this.queues.addPlan({ ingestionId: id, round: record.round }).catch(() => {});
    return this.load(id);
  }

  /** Queues the current failures again (their blobs only) as a new round of the same run. */
  async retryFailed(id: string): Promise<{ record: IngestionRecord; blobs: number }> {
    const record = await this.load(id);
    this.checkRedis();
    const res = await this.store.startRetry(record, this.opts.config.JOB_TTL_S);
    switch (res.status) {
      case 'ok':
        await this.queues.addPlan({ ingestionId: id, round: res.round });
        return { record: await this.load(id), blobs: res.blobs };
      case 'none':
        throw bad(`ingestion ${id} has no failures to retry`);
      case 'locked':
        throw bad(`output is being written by ingestion ${res.holder}; retry when it is done`);
      case 'state':
        throw bad(`ingestion ${id} is ${record.state}; failures can be retried once it has finished`);
      default:
        throw new EmbedpoolError('NOT_FOUND', `no ingestion ${id}`);
    }
  }

  close(): Promise<void> {
    return this.queues.close();
  }
}
