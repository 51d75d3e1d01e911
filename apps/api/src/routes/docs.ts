import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import express, { Router } from 'express';

// swagger-ui-dist ships Swagger UI prebuilt (no build step, no CDN): its directory is served as is.
const SWAGGER_UI_DIR = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>embedpool API reference</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`;

// A file rather than an inline script, so a Content-Security-Policy without 'unsafe-inline' still allows it.
const INIT = `window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  validatorUrl: null,
});
`;

/**
 * GET /docs: an API reference rendered in the browser by Swagger UI from GET /openapi.json. Everything it
 * loads comes from this server (swagger-ui-dist in node_modules), so it works offline and behind a firewall.
 */
export function docsRouter(): Router {
  const router = Router();
  router.get('/docs', (_req, res) => {
    res.set('Cache-Control', 'no-cache').type('text/html').send(PAGE);
  });
  // Assets (this script, Swagger UI's files) are middleware, not routes: /openapi.json documents the API only.
  router.use('/docs/init.js', (req, res, next) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    res.set('Cache-Control', 'no-cache').type('text/javascript').send(INIT);
  });
  router.use('/docs/assets', express.static(SWAGGER_UI_DIR, { index: false, maxAge: '1h' }));
  return router;
}

/**
 * GET /: liveness as the Azure ML inference server answers it (`Healthy`), so probes and tools written for
 * Azure ML online endpoints work unchanged. Same meaning as /healthz.
 */
export function rootRouter(): Router {
  const router = Router();
  router.get('/', (_req, res) => {
    res.set('Cache-Control', 'no-store').type('text/plain').send('Healthy');
  });
  return router;
}
