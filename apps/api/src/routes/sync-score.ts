import type { Config } from '@embedpool/core/config';
import type { ImageRef } from '@embedpool/core/queue';
import type { Request, Response } from 'express';
import { ClientGoneError, watchClientGone } from '../client-gone';
import { RowFailuresError } from '../http-errors';
import type { ApiMetrics } from '../metrics';
import { admitImages } from '../overload';
import { requestLog, uniqueRequestId } from '../request-context';
import type { ScoreAnswer, ScoreClient } from '../score-client';

/** What the synchronous routes (/score, /v1/embeddings) share. */
export interface SyncScoreDeps {
  config: Config;
  scoreClient: ScoreClient;
  metrics: ApiMetrics;
}

/** Parses a request body, counting each refused row in the failure metric by its code. */
export function parseCounted<T>(metrics: ApiMetrics, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof RowFailuresError) countFailures(metrics, err);
    throw err;
  }
}

/**
 * One synchronous request's images as one score job: admitted against the backlog, run with the request's
 * deadline, cancelled if its client goes away. Resolves to the answer, with any failed image thrown as a
 * RowFailuresError (one image per row, so a worker's image index is the row index); or to undefined when
 * the request has already been answered (429 from the backlog) or nobody is left to answer.
 */
export async function scoreRequest(
  req: Request,
  res: Response,
  { config, scoreClient, metrics }: SyncScoreDeps,
  images: ImageRef[],
  logFields: Record<string, unknown> = {},
): Promise<ScoreAnswer | undefined> {
  // Never the client's X-Request-Id: job ids are idempotency keys in BullMQ, so a reused header would
  // attach this request to another one's job (and hand it that result).
  const jobId = uniqueRequestId(res);
  // Overload: new work only while the backlog has room (else answered 429) and its client is still there.
  if (!(await admitImages(req, res, jobId, images.length))) return undefined;
  const jobLog = requestLog(res).child({ jobId });
  jobLog.debug({ images: images.length, ...logFields }, 'scoring');

  const gone = watchClientGone(res);
  let answer: ScoreAnswer;
  try {
    answer = await scoreClient.score(images, {
      jobId,
      timeoutMs: config.REQUEST_TIMEOUT_MS,
      signal: gone.signal,
      log: jobLog,
    });
  } catch (err) {
    // Nobody is left to read an answer; the job has been cancelled.
    if (err instanceof ClientGoneError) return undefined;
    throw err;
  } finally {
    gone.release();
  }
  const { failures } = answer.result;
  if (failures.length > 0) {
    const err = new RowFailuresError(
      failures.map((f) => ({ row: f.index, code: f.code, message: f.message })),
    );
    countFailures(metrics, err);
    throw err;
  }
  return answer;
}

function countFailures(metrics: ApiMetrics, err: RowFailuresError): void {
  for (const f of err.failures) metrics.scoreImageFailures.inc({ code: f.code });
}
