import { randomUUID } from 'node:crypto';
import type { Logger } from '@embedpool/core/logger';
import {
  context as otelContext,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  tracer,
} from '@embedpool/core/telemetry';
import type { RequestHandler, Response } from 'express';

// Printable, short, and free of anything a log line or a header could be abused with.
const SANE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;
const PROBES = new Set(['/healthz', '/readyz', '/metrics']);

interface RequestContext {
  requestId: string;
  /** True when the id is ours (a fresh uuid), false when the client chose it. */
  generated: boolean;
  log: Logger;
}

/** A caller's X-Request-Id when it is sane, else a fresh uuid; logged with every line and echoed back. */
export function pickRequestId(header: unknown): { requestId: string; generated: boolean } {
  return typeof header === 'string' && SANE_REQUEST_ID.test(header)
    ? { requestId: header, generated: false }
    : { requestId: randomUUID(), generated: true };
}

export function requestContext(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const start = process.hrtime.bigint();
    const { requestId, generated } = pickRequestId(req.headers['x-request-id']);
    const log = logger.child({ requestId });
    const ctx: RequestContext = { requestId, generated, log };
    res.locals.ctx = ctx;
    res.setHeader('X-Request-Id', requestId);
    // Tracing (a no-op without OTEL_EXPORTER_OTLP_ENDPOINT): a server span continuing the caller's
    // traceparent, active for everything the request does, the job it queues included. Probes are not traced.
    const span = PROBES.has(req.path)
      ? undefined
      : tracer().startSpan(
          `${req.method} ${req.path}`,
          {
            kind: SpanKind.SERVER,
            attributes: {
              'http.request.method': req.method,
              'url.path': req.path,
              'embedpool.request_id': requestId,
            },
          },
          propagation.extract(otelContext.active(), req.headers),
        );
    res.on('close', () => {
      if (span) {
        if (req.route?.path) span.updateName(`${req.method} ${req.baseUrl}${String(req.route.path)}`);
        span.setAttribute('http.response.status_code', res.statusCode);
        if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      }
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      const fields = { method: req.method, path: req.path, status: res.statusCode, ms: Math.round(ms) };
      if (!res.writableFinished) log.warn(fields, 'client went away before the answer');
      // Probes arrive every few seconds from every orchestrator; at info they would drown the real traffic.
      else if (PROBES.has(req.path) && res.statusCode < 400) log.debug(fields, 'request done');
      else log.info(fields, 'request done');
    });
    if (!span) return next();
    const traced = trace.setSpan(otelContext.active(), span);
    // The body arrives in stream callbacks that would otherwise run outside the request's context.
    otelContext.bind(traced, req);
    otelContext.bind(traced, res);
    otelContext.with(traced, next);
  };
}

function context(res: Response): RequestContext | undefined {
  return res.locals.ctx as RequestContext | undefined;
}

/** A uuid unique to this request, usable as a job id: the request id when we generated it. */
export function uniqueRequestId(res: Response): string {
  const ctx = context(res);
  return ctx?.generated ? ctx.requestId : randomUUID();
}

export function requestLog(res: Response): Logger {
  const ctx = context(res);
  if (!ctx) throw new Error('requestContext middleware is not installed');
  return ctx.log;
}
