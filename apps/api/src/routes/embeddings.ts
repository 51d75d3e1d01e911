import type { Config } from '@embedpool/core/config';
import { EmbedpoolError } from '@embedpool/core/errors';
import { type ErrorRequestHandler, type RequestHandler, type Response, Router } from 'express';
import { ClientGoneError, watchClientGone } from '../client-gone';
import { RETRY_AFTER_S, RowFailuresError } from '../http-errors';
import { jsonBody } from '../json-body';
import type { ApiMetrics } from '../metrics';
import { checkDimensions, embeddingsJson, parseEmbeddingsRequest, toOpenAiError } from '../openai-schema';
import { admitImages } from '../overload';
import { requestLog, uniqueRequestId } from '../request-context';
import type { ScoreClient } from '../score-client';

export interface EmbeddingsRouteDeps {
  config: Config;
  scoreClient: ScoreClient;
  metrics: ApiMetrics;
}

/**
 * POST /v1/embeddings: the OpenAI embeddings contract, so OpenAI SDKs (and what is built on them) work
 * unchanged against a base URL of `http://host:port/v1`. One request is one score job, exactly as on
 * /score: same limits, same deadline, same cancellation when the client goes away. Every answer under /v1,
 * errors and unknown routes included, is in OpenAI's shape. The mapping is documented in docs/openai.md.
 */
export function embeddingsRouter({ config, scoreClient, metrics }: EmbeddingsRouteDeps): Router {
  const router = Router();
  const json = jsonBody(config.MAX_BODY_BYTES);

  router.post('/v1/embeddings', json, async (req, res) => {
    const log = requestLog(res);
    let request: ReturnType<typeof parseEmbeddingsRequest>;
    try {
      request = parseEmbeddingsRequest(req.body, {
        maxImages: config.MAX_IMAGES_PER_REQUEST,
        maxImageBytes: config.MAX_IMAGE_BYTES,
      });
    } catch (err) {
      if (err instanceof RowFailuresError) countFailures(metrics, err);
      throw err;
    }
    const { images } = request;

    // Never the client's X-Request-Id as a job id (see routes/score.ts).
    const jobId = uniqueRequestId(res);
    // Overload: new work only while the backlog has room (else answered 429) and its client is still there.
    if (!(await admitImages(req, res, jobId, images.length))) return;
    const jobLog = log.child({ jobId });
    jobLog.debug(
      { images: images.length, model: request.model, format: request.encodingFormat },
      'embedding',
    );

    const gone = watchClientGone(res);
    let answer: Awaited<ReturnType<ScoreClient['score']>>;
    try {
      answer = await scoreClient.score(images, {
        jobId,
        timeoutMs: config.REQUEST_TIMEOUT_MS,
        signal: gone.signal,
        log: jobLog,
      });
    } catch (err) {
      // Nobody is left to read an answer; the job has been cancelled.
      if (err instanceof ClientGoneError) return;
      throw err;
    } finally {
      gone.release();
    }

    const { result, vectors } = answer;
    if (result.failures.length > 0) {
      // One job image per input, so a worker's image index is the input index.
      const err = new RowFailuresError(
        result.failures.map((f) => ({ row: f.index, code: f.code, message: f.message })),
      );
      countFailures(metrics, err);
      throw err;
    }
    checkDimensions(request.dimensions, result.dim, result.model);
    metrics.scoreImages.inc(result.count);
    res
      .type('application/json')
      .send(embeddingsJson(vectors, result.count, result.dim, request.encodingFormat, result.model));
  });

  // Anything else under /v1 is unknown here; answered in OpenAI's shape like the rest of /v1.
  router.use('/v1', notFound);
  router.use('/v1', openAiErrorHandler);
  return router;
}

function countFailures(metrics: ApiMetrics, err: RowFailuresError): void {
  for (const f of err.failures) metrics.scoreImageFailures.inc({ code: f.code });
}

const notFound: RequestHandler = (req, res) => {
  sendOpenAiError(
    res,
    new EmbedpoolError('NOT_FOUND', `no route for ${req.method} ${req.baseUrl}${req.path}`),
  );
};

const openAiErrorHandler: ErrorRequestHandler = (err, _req, res, _next) => {
  if (res.headersSent) {
    res.destroy(err instanceof Error ? err : undefined);
    return;
  }
  sendOpenAiError(res, err);
};

export function sendOpenAiError(res: Response, err: unknown): void {
  const { status, body, permanent } = toOpenAiError(err);
  const { code, message } = body.error;
  if (status >= 500) requestLog(res).error({ err, status, code }, 'request failed');
  else requestLog(res).info({ status, code, reason: message }, 'request rejected');
  if (status === 503) res.setHeader('Retry-After', String(RETRY_AFTER_S));
  // OpenAI SDKs obey this over their own status rules: no retries of a request that cannot succeed.
  if (permanent) res.setHeader('x-should-retry', 'false');
  res.status(status).json(body);
}
