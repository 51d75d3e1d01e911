import { describe, expect, it } from 'vitest';
import { bullmqTelemetry, startTelemetry, telemetryConfigured, tracer } from './index';

describe('telemetry without an OTLP endpoint', () => {
  it('starts nothing: no provider, no BullMQ telemetry, spans that record nothing', () => {
    const env = { ...process.env };
    delete env.OTEL_EXPORTER_OTLP_ENDPOINT;
    delete env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
    const saved = process.env;
    process.env = env;
    try {
      expect(telemetryConfigured(env)).toBe(false);
      expect(startTelemetry({ serviceName: 'embedpool-test' })).toBeUndefined();
      expect(bullmqTelemetry()).toEqual({});
      const span = tracer().startSpan('x');
      expect(span.isRecording()).toBe(false);
      span.end();
    } finally {
      process.env = saved;
    }
    expect(telemetryConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' })).toBe(true);
  });
});
