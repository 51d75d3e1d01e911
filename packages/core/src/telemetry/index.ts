/**
 * OpenTelemetry traces, off unless OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is
 * set: then one trace per request or job, from the API's HTTP span through BullMQ (its own telemetry,
 * bullmq-otel, which carries the trace context inside the job) to the worker's stages and the sinks,
 * exported over OTLP/HTTP. The standard OTEL_* variables (headers, service name, sampler, batch delays)
 * are read by the SDK itself. Metrics stay on Prometheus. Without an endpoint every call here is the
 * OpenTelemetry API's no-op.
 */
import {
  type Attributes,
  type Context,
  context,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TimeInput,
  trace,
} from '@opentelemetry/api';
import * as exporterModule from '@opentelemetry/exporter-trace-otlp-http';
import * as resourcesModule from '@opentelemetry/resources';
import * as sdkModule from '@opentelemetry/sdk-trace-node';
import * as bullmqOtelModule from 'bullmq-otel';

// These packages are CommonJS whose named exports Node's ESM loader cannot always see (the compiled
// images run plain Node, not tsx): take them from the module object, wherever Node put it.
const cjs = <T>(m: T): T => ((m as { default?: T }).default ?? m) as T;
const { OTLPTraceExporter } = cjs(exporterModule);
const { resourceFromAttributes } = cjs(resourcesModule);
const { BatchSpanProcessor, NodeTracerProvider } = cjs(sdkModule);
const { BullMQOtel } = cjs(bullmqOtelModule);
type NodeTracerProvider = InstanceType<typeof NodeTracerProvider>;
type BullMQOtel = InstanceType<typeof BullMQOtel>;

export { type Context, context, propagation, type Span, SpanKind, SpanStatusCode, trace };

const TRACER = 'embedpool';

export interface Telemetry {
  /** Sends every finished span now (tests; before exit). */
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

let started: { provider: NodeTracerProvider; bullmq: BullMQOtel; handle: Telemetry } | undefined;

/** Whether an OTLP endpoint is configured in this environment. */
export function telemetryConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/**
 * Starts tracing for this process when an endpoint is configured (or given); undefined otherwise. Call it
 * before any queue or worker is created: they pick up BullMQ's telemetry when they are constructed.
 */
export function startTelemetry(opts: { serviceName: string; endpoint?: string }): Telemetry | undefined {
  if (started) return started.handle;
  const endpoint = opts.endpoint ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const tracesEndpoint =
    opts.endpoint === undefined ? process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT : undefined;
  if (!endpoint && !tracesEndpoint) return undefined;
  // The signal-specific variable is a full URL; the generic one is a base that gets /v1/traces (OTLP spec).
  const exporter = new OTLPTraceExporter(
    tracesEndpoint ? {} : { url: `${endpoint!.replace(/\/+$/, '')}/v1/traces` },
  );
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': process.env.OTEL_SERVICE_NAME || opts.serviceName }),
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  // Global provider, AsyncLocalStorage context and the W3C traceparent propagator.
  provider.register();
  const handle: Telemetry = {
    flush: () => provider.forceFlush(),
    shutdown: async () => {
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
      started = undefined;
    },
  };
  started = { provider, bullmq: new BullMQOtel(TRACER), handle };
  return handle;
}

/** Spread into a BullMQ Queue's or Worker's options: BullMQ's spans and the context carried in each job. */
export function bullmqTelemetry(): { telemetry?: BullMQOtel } {
  return started ? { telemetry: started.bullmq } : {};
}

export function tracer() {
  return trace.getTracer(TRACER);
}

/** Runs `fn` in a child span of the active one; records a throw as the span's error. */
export async function inSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  return tracer().startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      failSpan(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

export function failSpan(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}

/** A span for an interval measured elsewhere (a shared batch's wait or model run), under `parent`. */
export function recordSpan(
  name: string,
  parent: Context,
  start: TimeInput,
  end: TimeInput,
  attributes: Attributes = {},
): void {
  tracer().startSpan(name, { startTime: start, attributes }, parent).end(end);
}

/** Epoch milliseconds of a performance.now() reading, as OpenTelemetry's TimeInput. */
export function epochMs(perfNow: number): number {
  return performance.timeOrigin + perfNow;
}
