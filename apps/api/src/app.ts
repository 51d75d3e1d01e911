import type { Config } from '@embedpool/core/config';
import type { IngestionService } from '@embedpool/core/ingest';
import { createLogger, type Logger } from '@embedpool/core/logger';
import type { GenerationWatch } from '@embedpool/core/queue';
import type { Queue } from 'bullmq';
import express, { type Express } from 'express';
import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import { type AuthSetup, authenticate, metricsGuard, resolveAuth } from './auth';
import { errorHandler, notFoundHandler, requireRedis } from './http-errors';
import type { InlineHandoff } from './inline-handoff';
import { createApiMetrics, httpMetrics } from './metrics';
import { BacklogGate, backlogGuard, rateLimit } from './overload';
import { requestContext } from './request-context';
import { dashboardRouter } from './routes/dashboard';
import { docsRouter, rootRouter } from './routes/docs';
import { embeddingsRouter } from './routes/embeddings';
import { healthRouter } from './routes/health';
import { ingestionsRouter } from './routes/ingestions';
import { type JobsRouteDeps, jobsRouter } from './routes/jobs';
import { metricsRouter } from './routes/metrics';
import { modelsRouter } from './routes/models';
import { openapiRouter } from './routes/openapi';
import { scoreRouter } from './routes/score';
import type { ScoreClient } from './score-client';

export interface ApiDeps {
  config: Config;
  /** Producer connection (fail-fast): readiness probes. */
  redis: Redis;
  scoreClient: ScoreClient;
  /** Whether job completions can reach this process; a ScoreWaiter. */
  events: { readonly listening: boolean };
  logger?: Logger;
  /** Shared with other components of the process when given; a private registry otherwise. */
  registry?: Registry;
  /** The async job API (/v1/jobs). */
  jobs?: Omit<JobsRouteDeps, 'config' | 'redis'>;
  /** Bulk ingestion (/v1/ingestions). */
  ingestions?: IngestionService;
  /** Queues shown by the operators' dashboard (mounted only when DASHBOARD_TOKEN is set). */
  dashboardQueues?: Queue[];
  /** Whether Redis lost its data (readyz, 410 for lost ids); absent: never reported. */
  generation?: GenerationWatch;
  /** How callers authenticate (startApi resolves it before binding); resolved from config when absent. */
  auth?: AuthSetup;
  /** Where workers read the inline images of /score requests (its route needs no API credentials). */
  handoff?: InlineHandoff;
}

export function createApiApp(deps: ApiDeps): Express {
  const { config } = deps;
  const logger = deps.logger ?? createLogger({ name: 'api', level: config.LOG_LEVEL });
  const metrics = createApiMetrics(deps.registry);
  const auth = deps.auth ?? resolveAuth(config);
  const app = express();
  app.disable('x-powered-by');
  // Hashing megabytes of vectors for an ETag nobody revalidates against is pure cost.
  app.set('etag', false);

  app.use(requestContext(logger));
  app.use(httpMetrics(metrics));
  app.use(
    healthRouter({
      config,
      redis: deps.redis,
      events: deps.events,
      ...(deps.generation ? { generation: deps.generation } : {}),
    }),
  );
  app.use('/metrics', metricsGuard(auth));
  app.use(metricsRouter(metrics.registry));
  app.use(openapiRouter());
  app.use(docsRouter());
  app.use(rootRouter());
  // Workers, not callers: guarded by each job's own secret instead of API credentials.
  if (deps.handoff) app.use(deps.handoff.router());
  if (config.DASHBOARD_TOKEN && deps.dashboardQueues) {
    app.use(dashboardRouter(config.DASHBOARD_TOKEN, deps.dashboardQueues));
  }
  // Everything below needs credentials (when auth is on), counts against its caller's rate limit, and
  // brings new work only while the backlog has room (docs/hardening.md).
  app.use(authenticate(auth));
  app.use(
    rateLimit(deps.redis, {
      limit: config.RATE_LIMIT_REQUESTS,
      windowS: config.RATE_LIMIT_WINDOW_S,
      prefix: config.QUEUE_PREFIX,
    }),
  );
  const backlog =
    config.MAX_BACKLOG_IMAGES > 0
      ? new BacklogGate(deps.redis, config.QUEUE_PREFIX, config.MAX_BACKLOG_IMAGES)
      : undefined;
  app.use(backlogGuard(backlog));
  app.use(modelsRouter({ config, redis: deps.redis }));
  app.use(scoreRouter({ config, scoreClient: deps.scoreClient, metrics }));
  if (deps.jobs) {
    app.use('/v1/jobs', requireRedis(deps.redis));
    app.use(
      jobsRouter({
        config,
        redis: deps.redis,
        ...deps.jobs,
        ...(deps.generation ? { generation: deps.generation } : {}),
      }),
    );
    // Ahead of the OpenAI-shaped handling of the rest of /v1: job errors keep the service's own shape.
    app.use('/v1/jobs', errorHandler);
  }
  if (deps.ingestions) {
    app.use('/v1/ingestions', requireRedis(deps.redis));
    app.use(
      ingestionsRouter({
        config,
        redis: deps.redis,
        service: deps.ingestions,
        ...(deps.generation ? { generation: deps.generation } : {}),
      }),
    );
    app.use('/v1/ingestions', errorHandler);
  }
  app.use(embeddingsRouter({ config, scoreClient: deps.scoreClient, metrics }));
  app.use(notFoundHandler);
  app.use(errorHandler);
  return app;
}
