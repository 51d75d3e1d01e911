import type { Config } from '@embedpool/core/config';
import { Router } from 'express';
import { parseScoreRequest } from '../azure-schema';
import { ClientGoneError, watchClientGone } from '../client-gone';
import { imageFeaturesJson } from '../features-json';
import { RowFailuresError } from '../http-errors';
import { jsonBody } from '../json-body';
import type { ApiMetrics } from '../metrics';
import { admitImages } from '../overload';
import { requestLog, uniqueRequestId } from '../request-context';
import type { ScoreClient } from '../score-client';

export interface ScoreRouteDeps {
  config: Config;
  scoreClient: ScoreClient;
  metrics: ApiMetrics;
}

/** POST /score: the Azure ML online-endpoint contract for image embeddings. */
export function scoreRouter({ config, scoreClient, metrics }: ScoreRouteDeps): Router {
  const router = Router();
  const json = jsonBody(config.MAX_BODY_BYTES);

  router.post('/score', json, async (req, res) => {
    const log = requestLog(res);
    let images: ReturnType<typeof parseScoreRequest>;
    try {
      images = parseScoreRequest(req.body, {
        maxImages: config.MAX_IMAGES_PER_REQUEST,
        maxImageBytes: config.MAX_IMAGE_BYTES,
      });
    } catch (err) {
      if (err instanceof RowFailuresError) countFailures(metrics, err);
      throw err;
    }

    // Never the client's X-Request-Id: job ids are idempotency keys in BullMQ, so a reused header would
    // attach this request to another one's job (and hand it that result).
    const jobId = uniqueRequestId(res);
    // Overload: new work only while the backlog has room (else answered 429) and its client is still there.
    if (!(await admitImages(req, res, jobId, images.length))) return;
    const jobLog = log.child({ jobId });
    jobLog.debug({ images: images.length }, 'scoring');

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
      // One image per row, so a worker's image index is the row index.
      const err = new RowFailuresError(
        result.failures.map((f) => ({ row: f.index, code: f.code, message: f.message })),
      );
      countFailures(metrics, err);
      throw err;
    }
    metrics.scoreImages.inc(result.count);
    res.type('application/json').send(imageFeaturesJson(vectors, result.count, result.dim));
  });
  return router;
}

function countFailures(metrics: ApiMetrics, err: RowFailuresError): void {
  for (const f of err.failures) metrics.scoreImageFailures.inc({ code: f.code });
}
