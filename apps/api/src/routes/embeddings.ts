import { EmbedpoolError } from '@embedpool/core/errors';
import { type ErrorRequestHandler, type RequestHandler, type Response, Router } from 'express';
import { RETRY_AFTER_S } from '../http-errors';
import { jsonBody } from '../json-body';
import { checkDimensions, embeddingsJson, parseEmbeddingsRequest, toOpenAiError } from '../openai-schema';
import { requestLog } from '../request-context';
import { parseCounted, type SyncScoreDeps, scoreRequest } from './sync-score';

export type EmbeddingsRouteDeps = SyncScoreDeps;

/**
 * POST /v1/embeddings: the OpenAI embeddings contract, so OpenAI SDKs (and what is built on them) work
 * unchanged against a base URL of `http://host:port/v1`. One request is one score job, exactly as on
 * /score: same limits, same deadline, same cancellation when the client goes away. Every answer under /v1,
 * errors and unknown routes included, is in OpenAI's shape. The mapping is documented in docs/openai.md.
 */
export function embeddingsRouter(deps: EmbeddingsRouteDeps): Router {
  const { config, metrics } = deps;
  const router = Router();
  const json = jsonBody(config.MAX_BODY_BYTES);

  router.post('/v1/embeddings', json, async (req, res) => {
    const request = parseCounted(metrics, () =>
      parseEmbeddingsRequest(req.body, {
        maxImages: config.MAX_IMAGES_PER_REQUEST,
        maxImageBytes: config.MAX_IMAGE_BYTES,
      }),
    );
    // One job image per input, so a failed image's index is the input's.
    const answer = await scoreRequest(req, res, deps, request.images, {
      model: request.model,
      format: request.encodingFormat,
    });
    if (!answer) return;
    const { result, vectors } = answer;
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
