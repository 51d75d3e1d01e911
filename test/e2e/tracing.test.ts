/**
 * OpenTelemetry: with an OTLP endpoint set, one /score is one connected trace, from the API's HTTP span
 * through BullMQ (producer -> consumer, the context carried in the job) to the worker's stages and the
 * sink. The collector is a loopback OTLP/HTTP receiver (JSON encoding, what the exporter sends).
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTelemetry, type Telemetry } from '@embedpool/core/telemetry';
import { parityImages } from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, testConfig } from '../support/stack';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
}
interface OtlpExport {
  resourceSpans: {
    resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
    scopeSpans: { spans: OtlpSpan[] }[];
  }[];
}

const SERVER = 2;

/** A loopback OTLP/HTTP receiver: keeps every span of every POST /v1/traces. */
async function startReceiver(): Promise<{
  url: string;
  spans: OtlpSpan[];
  services: Set<string>;
  server: Server;
}> {
  const spans: OtlpSpan[] = [];
  const services = new Set<string>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/traces') {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpExport;
        for (const rs of body.resourceSpans) {
          const name = rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue;
          if (name) services.add(name);
          for (const ss of rs.scopeSpans) spans.push(...ss.spans);
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } else {
        res.writeHead(404).end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, services, server };
}

describe('OpenTelemetry traces', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let telemetry: Telemetry;
  let stack: Awaited<ReturnType<typeof startStack>>;

  beforeAll(async () => {
    receiver = await startReceiver();
    // Before the stack: queues and workers take BullMQ's telemetry when they are built.
    telemetry = startTelemetry({ serviceName: 'embedpool-test', endpoint: receiver.url })!;
    expect(telemetry).toBeDefined();
    stack = await startStack(testConfig());
  });
  afterAll(async () => {
    await stack?.stop();
    await telemetry?.shutdown();
    await new Promise((r) => receiver?.server.close(r));
  });

  it('one /score is one connected trace from the HTTP request to the worker stages and the sink', async () => {
    const image = parityImages().find((i) => i.reference)!;
    const res = await fetch(`${stack.api.url}/score`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        input_data: { columns: ['image'], data: [[readFileSync(image.path).toString('base64')]] },
      }),
    });
    expect(res.status).toBe(200);
    await telemetry.flush();

    const roots = receiver.spans.filter((s) => s.kind === SERVER && s.name === 'POST /score');
    expect(roots, receiver.spans.map((s) => s.name).join(', ')).toHaveLength(1);
    const root = roots[0]!;
    expect(root.parentSpanId ?? '').toBe('');
    const trace = receiver.spans.filter((s) => s.traceId === root.traceId);
    const names = trace.map((s) => s.name);
    for (const stage of ['fetch', 'decode', 'batch', 'infer', 'deliver'])
      expect(names, stage).toContain(stage);
    // BullMQ's own spans: the job added by the API and processed by the worker, in the same trace.
    expect(
      names.some((n) => /^add /.test(n)),
      names.join(', '),
    ).toBe(true);
    expect(
      names.some((n) => /^process /.test(n)),
      names.join(', '),
    ).toBe(true);

    // Connected: every span but the root has its parent in the trace, and every stage leads up to the root.
    const byId = new Map(trace.map((s) => [s.spanId, s]));
    for (const s of trace) {
      if (s === root) continue;
      expect(byId.has(s.parentSpanId ?? ''), `${s.name}'s parent is in the trace`).toBe(true);
    }
    const ancestors = (s: OtlpSpan): string[] => {
      const out: string[] = [];
      for (let p = byId.get(s.parentSpanId ?? ''); p; p = byId.get(p.parentSpanId ?? '')) out.push(p.name);
      return out;
    };
    const infer = trace.find((s) => s.name === 'infer')!;
    const chain = ancestors(infer);
    expect(chain.at(-1)).toBe('POST /score');
    expect(chain.some((n) => /^process /.test(n))).toBe(true);
    expect(receiver.services).toContain('embedpool-test');
  });
});
