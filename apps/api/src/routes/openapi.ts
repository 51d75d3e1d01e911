import { Router } from 'express';
import { buildOpenApiDocument } from '../openapi';

/** GET /openapi.json: the OpenAPI 3.1 description of this API (apps/api/src/openapi). */
export function openapiRouter(): Router {
  const router = Router();
  let body: string | undefined;
  router.get('/openapi.json', (_req, res) => {
    // Built on first use, then served as the same bytes: it describes code, which does not change at run time.
    body ??= JSON.stringify(buildOpenApiDocument());
    res.set('Cache-Control', 'no-cache').type('application/json').send(body);
  });
  return router;
}
