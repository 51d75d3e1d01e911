import { registerProcessMetrics } from '@embedpool/core/metrics';
import type { RequestHandler } from 'express';
import { Counter, Histogram, type Metric, Registry } from 'prom-client';

export interface ApiMetrics {
  readonly registry: Registry;
  readonly httpRequests: Counter<'route' | 'method' | 'status'>;
  readonly httpDuration: Histogram<'route' | 'method'>;
  readonly scoreImages: Counter;
  readonly scoreImageFailures: Counter<'code'>;
}

// Any metric prom-client's default set always registers: its presence means someone already collected them.

/**
 * Registers the API's metrics on `registry` (a fresh one when none is given, never the global default),
 * reusing any already there: an all-in-one process shares one registry with the worker, and tests build
 * several apps in one process, so registering twice must not throw.
 */
export function createApiMetrics(registry: Registry = new Registry()): ApiMetrics {
  registerProcessMetrics(registry);
  const reuse = <T extends Metric>(name: string, make: () => T): T =>
    (registry.getSingleMetric(name) as T | undefined) ?? make();
  return {
    registry,
    httpRequests: reuse(
      'embedpool_http_requests_total',
      () =>
        new Counter({
          name: 'embedpool_http_requests_total',
          help: 'HTTP requests answered, by route, method and status (499: client went away first)',
          labelNames: ['route', 'method', 'status'] as const,
          registers: [registry],
        }),
    ),
    httpDuration: reuse(
      'embedpool_http_request_duration_seconds',
      () =>
        new Histogram({
          name: 'embedpool_http_request_duration_seconds',
          help: 'Time from request arrival to the last byte of the answer',
          labelNames: ['route', 'method'] as const,
          buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
          registers: [registry],
        }),
    ),
    scoreImages: reuse(
      'embedpool_score_images_total',
      () =>
        new Counter({
          name: 'embedpool_score_images_total',
          help: 'Images answered with a vector by /score',
          registers: [registry],
        }),
    ),
    scoreImageFailures: reuse(
      'embedpool_score_image_failures_total',
      () =>
        new Counter({
          name: 'embedpool_score_image_failures_total',
          help: 'Images /score rejected, by error code (found by the API or reported by a worker)',
          labelNames: ['code'] as const,
          registers: [registry],
        }),
    ),
  };
}

/** Labels by the matched route pattern, never the raw path, so a scanner cannot explode label cardinality. */
export function httpMetrics(metrics: ApiMetrics): RequestHandler {
  return (req, res, next) => {
    const end = metrics.httpDuration.startTimer();
    res.on('close', () => {
      const routePath: unknown = req.route?.path;
      const route = typeof routePath === 'string' ? routePath : 'unmatched';
      const status = res.writableFinished ? String(res.statusCode) : '499';
      metrics.httpRequests.inc({ route, method: req.method, status });
      end({ route, method: req.method });
    });
    next();
  };
}
