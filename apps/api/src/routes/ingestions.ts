import type { Config } from '@embedpool/core/config';
import { EmbedpoolError } from '@embedpool/core/errors';
import { INGESTION_ID, IngestionService } from '@embedpool/core/ingest';
import { type Generation, missingIsLost } from '@embedpool/core/queue';
import express, { type ErrorRequestHandler, type Request, type Response, Router } from 'express';
import type { Redis } from 'ioredis';
import { requestLog } from '../request-context';

export interface IngestionsRouteDeps {
  config: Config;
  /** Producer connection (fail-fast). */
  redis: Redis;
  /** Shared with the process (server.ts closes it); made here when absent. */
  service?: IngestionService;
  /** The Redis data marker as this process knows it: tells a lost ingestion (410) from an unknown one. */
  generation?: { readonly current: Generation | undefined };
}

/** When an ingestion id was minted: `ing-<ms base36>-<random>` (see core/ingest/names.ts). */
function ingestionIdTime(id: string): number | undefined {
  const m = /^ing-([0-9a-z]{9})-/.exec(id);
  return m ? Number.parseInt(m[1]!, 36) : undefined;
}

/** A missing ingestion minted before Redis lost its data is lost (410 STATE_LOST), not unknown (404). */
function lostIngestions(generation?: { readonly current: Generation | undefined }): ErrorRequestHandler {
  return (err, req, _res, next) => {
    const id = /^\/v1\/ingestions\/([^/]+)/.exec(req.path)?.[1];
    const g = generation?.current;
    const at = id ? ingestionIdTime(id) : undefined;
    if (
      at !== undefined &&
      err instanceof EmbedpoolError &&
      err.code === 'NOT_FOUND' &&
      missingIsLost(g, at)
    ) {
      return next(
        new EmbedpoolError(
          'STATE_LOST',
          `ingestion ${id} may have existed, but Redis lost its data at ${new Date(g!.lostAt!).toISOString()}; ` +
            'its state is gone (shards it wrote are listed by `embedpool recover`)',
        ),
      );
    }
    next(err);
  };
}

/** The largest `limit` of a page (the OpenAPI description says the same: openapi/ingestions.ts). */
export const MAX_PAGE = 1000;

function limitOf(req: Request, fallback: number): number {
  const raw = req.query.limit;
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE) {
    throw new EmbedpoolError('BAD_REQUEST', `limit must be an integer from 1 to ${MAX_PAGE}`);
  }
  return n;
}

/** Cursors are opaque to callers: base64url of the last item's key. */
const encodeCursor = (key: string) => Buffer.from(key, 'utf8').toString('base64url');
function decodeCursor(req: Request): string | undefined {
  const raw = req.query.cursor;
  if (raw === undefined || raw === '') return undefined;
  if (typeof raw !== 'string' || !/^[A-Za-z0-9_-]+$/.test(raw))
    throw new EmbedpoolError('BAD_REQUEST', 'invalid cursor');
  return Buffer.from(raw, 'base64url').toString('utf8');
}

function idOf(req: Request): string {
  const id = String(req.params.id);
  if (!INGESTION_ID.test(id)) throw new EmbedpoolError('NOT_FOUND', `no ingestion ${id}`);
  return id;
}

/**
 * /v1/ingestions: bulk ingestion of Azure Blob containers (see docs/ingestion.md). The work happens in the
 * workers; this router validates, records, reports, cancels and retries. Its OpenAPI description is
 * apps/api/src/openapi/ingestions.ts.
 */
export function ingestionsRouter(deps: IngestionsRouteDeps): Router {
  const { config } = deps;
  const service = deps.service ?? new IngestionService({ redis: deps.redis, config });
  const router = Router();
  const json = express.json({ limit: 64 * 1024, type: ['application/json', 'application/*+json'] });
  const self = (req: Request, id: string) => `${req.baseUrl}/v1/ingestions/${id}`;

  router.post('/v1/ingestions', json, async (req: Request, res: Response) => {
    const record = await service.create(req.body);
    requestLog(res).info(
      { ingestionId: record.id, source: record.request.source, output: record.request.output },
      'ingestion submitted',
    );
    res
      .status(202)
      .location(self(req, record.id))
      .json({ ...(await service.view(record)), statusUrl: self(req, record.id) });
  });

  router.get('/v1/ingestions', async (req: Request, res: Response) => {
    const cursor = decodeCursor(req);
    const page = await service.list({ limit: limitOf(req, 50), ...(cursor ? { cursor } : {}) });
    res.json({ items: page.items, ...(page.next ? { next: encodeCursor(page.next) } : {}) });
  });

  router.get('/v1/ingestions/:id', async (req: Request, res: Response) => {
    res.json(await service.view(await service.load(idOf(req))));
  });

  router.get('/v1/ingestions/:id/failures', async (req: Request, res: Response) => {
    const cursor = decodeCursor(req);
    const page = await service.failures(idOf(req), {
      limit: limitOf(req, 100),
      ...(cursor ? { cursor } : {}),
    });
    res.json({
      items: page.items.map((f) => ({
        blob: f.name,
        etag: f.etag,
        size: f.size,
        error: { code: f.code, message: f.message },
        permanent: f.permanent,
        ...(f.carried ? { carried: true } : {}),
        ...(f.chunk ? { chunk: f.chunk } : {}),
        at: new Date(f.at).toISOString(),
      })),
      ...(page.next !== undefined ? { next: encodeCursor(page.next) } : {}),
    });
  });

  router.delete('/v1/ingestions/:id', async (req: Request, res: Response) => {
    const record = await service.cancel(idOf(req));
    requestLog(res).info({ ingestionId: record.id }, 'ingestion cancel requested');
    res.status(202).json(await service.view(record));
  });

  router.post('/v1/ingestions/:id/retry-failed', async (req: Request, res: Response) => {
    const { record, blobs } = await service.retryFailed(idOf(req));
    requestLog(res).info(
      { ingestionId: record.id, blobs, round: record.round },
      'ingestion failures re-queued',
    );
    res.status(202).json({ ...(await service.view(record)), requeued: blobs });
  });

  router.use(lostIngestions(deps.generation));
  return router;
}
