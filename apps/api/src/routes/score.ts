import { Router } from 'express';
import { parseScoreRequest } from '../azure-schema';
import { imageFeaturesJson } from '../features-json';
import { jsonBody } from '../json-body';
import { parseCounted, type SyncScoreDeps, scoreRequest } from './sync-score';

export type ScoreRouteDeps = SyncScoreDeps;

/** POST /score: the Azure ML online-endpoint contract for image embeddings. */
export function scoreRouter(deps: ScoreRouteDeps): Router {
  const { config, metrics } = deps;
  const router = Router();
  const json = jsonBody(config.MAX_BODY_BYTES);

  router.post('/score', json, async (req, res) => {
    const images = parseCounted(metrics, () =>
      parseScoreRequest(req.body, {
        maxImages: config.MAX_IMAGES_PER_REQUEST,
        maxImageBytes: config.MAX_IMAGE_BYTES,
      }),
    );
    const answer = await scoreRequest(req, res, deps, images);
    if (!answer) return;
    const { result, vectors } = answer;
    metrics.scoreImages.inc(result.count);
    res.type('application/json').send(imageFeaturesJson(vectors, result.count, result.dim));
  });
  return router;
}
