import type { BlobStaging } from '@embedpool/core/blob';
import type { Config } from '@embedpool/core/config';
import { EmbedpoolError } from '@embedpool/core/errors';
import {
  type EmbedJobData,
  type JobQueue,
  type JobRecord,
  type JobStore,
  jobIdTime,
  jobKeys,
  newJobId,
} from '@embedpool/core/jobs';
import { deleteInline, type Generation, missingIsLost, packBase64, storeInline } from '@embedpool/core/queue';
import { type Request, type RequestHandler, type Response, Router } from 'express';
import type { Redis } from 'ioredis';
import { ownerOf } from '../auth';
import { parseJobRequest, requestHash } from '../job-request';
import { jsonBody } from '../json-body';
import { admitImages } from '../overload';
import { requestLog } from '../request-context';

export interface JobsRouteDeps {
  config: Config;
  redis: Redis;
  store: JobStore;
  queue: JobQueue;
  /** Where async jobs' inline images go instead of Redis (JOB_STAGING_CONTAINER). */
  staging?: BlobStaging;
  /** Re-queues a dead-lettered callback delivery (absent when callbacks are not configured). */
  redrive?: (jobId: string) => Promise<void>;
  /** The Redis data marker as this process knows it: tells a lost job (410) from an unknown one (404). */
  generation?: { readonly current: Generation | undefined };
}

/** How long a repeat of a request waits for the job the first one is creating, before answering 409. */
const IDEMPOTENCY_WAIT_MS = 5_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:-]{1,128}$/;

function statusUrl(req: Request, id: string): string {
  return `${req.baseUrl}/v1/jobs/${id}`;
}

/** The public view of a record: what a caller may see of its job. */
function view(record: JobRecord) {
  const failed = new Map(record.failures.map((f) => [f.index, f]));
  return {
    id: record.id,
    state: record.state,
    counts: { total: record.total, succeeded: record.succeeded, failed: record.failed },
    createdAt: new Date(record.createdAt).toISOString(),
    ...(record.startedAt ? { startedAt: new Date(record.startedAt).toISOString() } : {}),
    ...(record.finishedAt ? { finishedAt: new Date(record.finishedAt).toISOString() } : {}),
    output: record.output,
    ...(record.location ? { location: record.location } : {}),
    ...(record.delivery ? { delivery: record.delivery } : {}),
    ...(record.error ? { error: record.error } : {}),
    ...(record.model ? { model: record.model, dim: record.dim } : {}),
    items: record.itemIds.map((id, index) => {
      const f = failed.get(index);
      if (f) return { id, status: 'failed', error: { code: f.code, message: f.message } };
      const done = record.state === 'completed' || record.state === 'partially_failed';
      return { id, status: done ? 'succeeded' : record.state === 'cancelled' ? 'cancelled' : 'pending' };
    }),
  };
}

/**
 * A job as its owner sees it. Another caller's job answers exactly like a missing one (404, same message),
 * so job ids cannot be probed for existence. Records from before owners existed belong to `anonymous`.
 */
async function load(
  store: JobStore,
  id: string,
  owner: string,
  generation?: { readonly current: Generation | undefined },
): Promise<JobRecord> {
  const record = await store.get(id);
  if (!record && UUID.test(id) && missingIsLost(generation?.current, jobIdTime(id))) {
    // Nobody's job can be told apart here: the record (and its owner) went with Redis's data.
    const lostAt = new Date(generation!.current!.lostAt!).toISOString();
    throw new EmbedpoolError(
      'STATE_LOST',
      `job ${id} may have existed, but Redis lost its data at ${lostAt}; its state is gone ` +
        '(outputs it wrote are listed by `embedpool recover`)',
    );
  }
  if (!record || (record.owner ?? 'anonymous') !== owner)
    throw new EmbedpoolError('NOT_FOUND', `no job ${id}`);
  return record;
}

/** /v1/jobs: submit work, read its state and result, cancel it, redrive its callback. */
export function jobsRouter(deps: JobsRouteDeps): Router {
  const { config, store, queue } = deps;
  const router = Router();
  const json = jsonBody(config.MAX_BODY_BYTES);

  router.post('/v1/jobs', json, submitJob(deps));

  router.get('/v1/jobs/:id', async (req: Request, res: Response) => {
    res.json(view(await load(store, String(req.params.id), ownerOf(res), deps.generation)));
  });

  router.get('/v1/jobs/:id/result', async (req: Request, res: Response) => {
    const record = await load(store, String(req.params.id), ownerOf(res), deps.generation);
    if (record.output.type !== 'inline') {
      throw new EmbedpoolError('NOT_FOUND', `job ${record.id} writes to ${record.output.type}, not inline`);
    }
    if (record.state !== 'completed' && record.state !== 'partially_failed') {
      throw new EmbedpoolError('NOT_FOUND', `job ${record.id} has no result (state ${record.state})`);
    }
    const buf = await deps.redis.getBuffer(jobKeys.result(config.QUEUE_PREFIX, record.id));
    if (!buf) throw new EmbedpoolError('NOT_FOUND', `the result of job ${record.id} has expired`);
    const dim = record.dim ?? 0;
    const binary =
      req.accepts(['application/json', 'application/octet-stream']) === 'application/octet-stream';
    if (binary) {
      // Row-major float32, little-endian; ids and dimension travel in headers.
      res
        .status(200)
        .type('application/octet-stream')
        .set('X-Embedding-Dim', String(dim))
        .set('X-Embedding-Count', String(record.total))
        .set('X-Embedding-Ids', encodeURIComponent(JSON.stringify(record.itemIds)))
        .send(buf);
      return;
    }
    const vectors = new Float32Array(buf.byteLength / 4);
    new Uint8Array(vectors.buffer).set(buf);
    const failed = new Map(record.failures.map((f) => [f.index, f]));
    const items = record.itemIds.map((id, i) => {
      const f = failed.get(i);
      return f
        ? { id, error: { code: f.code, message: f.message } }
        : { id, image_features: Array.from(vectors.subarray(i * dim, (i + 1) * dim)) };
    });
    res.status(200).json({ id: record.id, model: record.model, dim, items });
  });

  router.delete('/v1/jobs/:id', async (req: Request, res: Response) => {
    const id = String(req.params.id);
    const owner = ownerOf(res);
    const record = await load(store, id, owner, deps.generation);
    if (record.state === 'queued') {
      await queue.remove(id);
      const moved = await store.cancel(id);
      if (moved === 'ok') {
        res.status(200).json(view(await load(store, id, owner)));
        return;
      }
    }
    const now = await load(store, id, owner);
    throw new EmbedpoolError('BAD_REQUEST', `job ${id} is ${now.state}; only queued jobs can be cancelled`);
  });

  router.post('/v1/jobs/:id/callback/redrive', async (req: Request, res: Response) => {
    const id = String(req.params.id);
    const owner = ownerOf(res);
    await load(store, id, owner, deps.generation);
    if (!deps.redrive) throw new EmbedpoolError('BAD_REQUEST', 'callbacks are not configured');
    await deps.redrive(id);
    res.status(202).json(view(await load(store, id, owner)));
  });

  return router;
}

/** POST /v1/jobs: validates, records and queues an async job (202), or answers a repeat of one (200). */
function submitJob(deps: JobsRouteDeps): RequestHandler {
  const { config, store, queue } = deps;
  return async (req: Request, res: Response) => {
    const log = requestLog(res);
    const owner = ownerOf(res);
    const jobId = newJobId();
    const createdAt = Date.now();
    const { request, data } = parseJobRequest(req.body, config, jobId, createdAt);
    const out = request.output;
    refuseUnconfiguredOutput(config, out);
    if (deps.redis.status !== 'ready') throw new EmbedpoolError('UNAVAILABLE', 'redis is unreachable');

    const key = req.get('idempotency-key');
    // Hashing reads every byte of every image: only a request with a key needs it.
    const hash = key === undefined ? '' : requestHash(request);
    if (key !== undefined && (await answerRepeat(deps, req, res, { key, hash, jobId, owner, request })))
      return;
    const release = () =>
      key === undefined
        ? Promise.resolve()
        : store.releaseIdempotencyKey(owner, key, hash, jobId).catch(() => {});
    // Overload: new work only while the backlog has room (else answered 429) and its client is still there.
    if (!(await admitImages(req, res, jobId, data.images.length))) {
      await release();
      return;
    }
    // Base64 images leave as raw bytes in one Redis key of the job's own (deleted when the job is done),
    // not inside the queue payload that BullMQ's scripts copy around.
    let staged: Awaited<ReturnType<typeof stageJobImages>> | undefined;
    let created = false;
    try {
      staged = await stageJobImages(deps.redis, config.QUEUE_PREFIX, data, config.JOB_TTL_S, deps.staging);
      await store.create({
        id: jobId,
        owner,
        itemIds: data.images.map((i) => i.id),
        normalize: request.normalize,
        output: out,
        createdAt,
      });
      created = true;
      await queue.add(staged, request.priority);
    } catch (err) {
      if (staged?.inline) await deleteInline(deps.redis, staged.inline, deps.staging).catch(() => {});
      // A record without a queued job would sit in 'queued' for good: close it, then free the key.
      if (created)
        await store.fail(jobId, { code: 'UNAVAILABLE', message: 'could not queue the job' }).catch(() => {});
      await release();
      throw err;
    }
    if (key !== undefined) await store.confirmIdempotencyKey(owner, key, hash, jobId).catch(() => {});
    log.info({ jobId, images: data.images.length, output: out.type }, 'job submitted');
    res
      .status(202)
      .location(statusUrl(req, jobId))
      .json({ id: jobId, state: 'queued', statusUrl: statusUrl(req, jobId) });
  };
}

/** Refuses an output this deployment cannot write: blobs without a storage account, callbacks without a secret. */
function refuseUnconfiguredOutput(
  config: Config,
  out: ReturnType<typeof parseJobRequest>['request']['output'],
): void {
  if (
    out.type === 'blob' &&
    !config.BLOB_CONNECTION_STRING &&
    !config.BLOB_SAS_URL &&
    !config.BLOB_ACCOUNT_URL
  ) {
    throw new EmbedpoolError(
      'BAD_REQUEST',
      'blob output is not available: this deployment has no storage account',
    );
  }
  if ((out.type === 'callback' || (out.type === 'blob' && out.callbackUrl)) && !config.CALLBACK_SECRET) {
    throw new EmbedpoolError(
      'BAD_REQUEST',
      'callbacks are not available: this deployment has no CALLBACK_SECRET',
    );
  }
}

/**
 * A request with an Idempotency-Key: claims the key for `jobId`, or finds the job an earlier request with
 * the same key and body created and answers with it (true: answered). 409 while that job is being created.
 */
async function answerRepeat(
  deps: JobsRouteDeps,
  req: Request,
  res: Response,
  r: {
    key: string;
    hash: string;
    jobId: string;
    owner: string;
    request: ReturnType<typeof parseJobRequest>['request'];
  },
): Promise<boolean> {
  const { config, store, queue } = deps;
  const { key, hash, jobId, owner, request } = r;
  if (!IDEMPOTENCY_KEY.test(key))
    throw new EmbedpoolError('BAD_REQUEST', 'Idempotency-Key: 1-128 of [A-Za-z0-9._:-]');
  const claim = await store.resolveIdempotencyKey(owner, key, hash, jobId, {
    waitMs: Math.min(IDEMPOTENCY_WAIT_MS, config.REQUEST_TIMEOUT_MS),
  });
  if ('pending' in claim) {
    throw new EmbedpoolError(
      'CONFLICT',
      `a request with this Idempotency-Key is still creating job ${claim.jobId}; retry shortly`,
    );
  }
  if (!claim.created) {
    const existing = claim.record;
    if (existing.state === 'queued') {
      // Its creator may have died between the record and the enqueue: add it again (the job id
      // dedupes, and a worker finds a finished record and does nothing twice).
      const again = parseJobRequest(req.body, config, existing.id, existing.createdAt).data;
      await queue.add(again, request.priority);
    }
    res
      .status(200)
      .location(statusUrl(req, existing.id))
      .json({
        id: existing.id,
        state: existing.state,
        statusUrl: statusUrl(req, existing.id),
        idempotent: true,
      });
    return true;
  }
  return false;
}

/** The job's base64 images packed into one binary Redis key; the payload keeps only their slices. */
async function stageJobImages(
  redis: Redis,
  prefix: string,
  data: EmbedJobData,
  ttlSeconds: number,
  staging: BlobStaging | undefined,
): Promise<EmbedJobData> {
  const base64: string[] = [];
  const at: number[] = [];
  data.images.forEach((img, i) => {
    if (img.ref.kind === 'base64') {
      at[i] = base64.length;
      base64.push(img.ref.data);
    }
  });
  if (base64.length === 0) return data;
  const { buffer, refs } = packBase64(base64);
  const inline = staging
    ? await staging.stage(data.jobId, buffer)
    : await storeInline(redis, prefix, data.jobId, buffer, ttlSeconds);
  return {
    ...data,
    images: data.images.map((img, i) =>
      img.ref.kind === 'base64' ? { id: img.id, ref: refs[at[i]!]! } : img,
    ),
    inline,
  };
}
