/**
 * Helpers for the fault-and-abuse suite. Every listener here binds a loopback address, and
 * `guardNetwork()` makes the whole test process refuse any TCP connection that is not to loopback and
 * any DNS lookup beyond `localhost`, so a broken guard in the service cannot reach another machine.
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { isIP } from 'node:net';
import { parityImages } from '@embedpool/testkit';
import {
  installConnectTripwire,
  installDnsTripwire,
  type LoopbackServer,
  startLoopbackServer,
} from '@embedpool/testkit/loopback-test-kit';
import { afterAll, beforeAll, expect } from 'vitest';

export { type LoopbackServer, startLoopbackServer };

const require = createRequire(import.meta.url);

/**
 * For the whole file: connections only to loopback (else the socket is destroyed before it sends a byte),
 * and name lookups answered from a fixed table (`localhost` -> 127.0.0.1, ::1), never by a DNS server.
 * Fails the file if anything tried.
 */
export function guardNetwork(): void {
  let connect: ReturnType<typeof installConnectTripwire>;
  let dnsTrip: ReturnType<typeof installDnsTripwire>;
  const dnsPromises = require('node:dns/promises') as typeof import('node:dns/promises');
  const original = dnsPromises.lookup;
  const refused: string[] = [];
  beforeAll(() => {
    connect = installConnectTripwire();
    dnsTrip = installDnsTripwire();
    // The worker's resolver (systemResolver) uses node:dns/promises; answer it from a table.
    (dnsPromises as { lookup: unknown }).lookup = async (host: string, opts?: { all?: boolean }) => {
      const table =
        isIP(host) !== 0
          ? [{ address: host, family: isIP(host) }]
          : host === 'localhost'
            ? [
                { address: '127.0.0.1', family: 4 },
                { address: '::1', family: 6 },
              ]
            : undefined;
      if (!table) {
        refused.push(host);
        throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host} (test resolver)`), {
          code: 'ENOTFOUND',
        });
      }
      return opts?.all ? table : table[0];
    };
    syncBuiltinESMExports();
  });
  afterAll(() => {
    (dnsPromises as { lookup: unknown }).lookup = original;
    syncBuiltinESMExports();
    connect.restore();
    dnsTrip.restore();
    expect(connect.violations, 'connections attempted off loopback').toEqual([]);
    expect(dnsTrip.trips, 'DNS lookups attempted').toEqual([]);
    expect(refused, 'names the test resolver refused').toEqual([]);
  });
}

export const fixtures = parityImages();
export const goodImage = fixtures.find((i) => i.name === 'grace_hopper.jpg')!;

export function scoreBody(images: string[]) {
  return { input_data: { columns: ['image'], index: images.map((_, i) => i), data: images.map((x) => [x]) } };
}

export interface Answer {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: answers are arrays or error objects, checked per test
  json: any;
}

export async function call(
  url: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const res = await fetch(url, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: {
      ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...init.headers,
    },
    ...(init.body === undefined
      ? {}
      : { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) }),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  return { status: res.status, headers: res.headers, json };
}

const FINAL = new Set(['completed', 'partially_failed', 'failed', 'cancelled']);

/** Polls a job's status (with the caller's credentials) until it is final. */
export async function pollJob(
  apiUrl: string,
  id: string,
  headers: Record<string, string> = {},
  timeoutMs = 30_000,
  // biome-ignore lint/suspicious/noExplicitAny: the job view, checked per test
): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status, json } = await call(`${apiUrl}/v1/jobs/${id}`, { headers });
    if (status !== 200) throw new Error(`job ${id}: HTTP ${status} ${JSON.stringify(json)}`);
    if (FINAL.has(json.state)) return json;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${json.state}`);
    await sleep(100);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Bounded wait for a condition the system reaches by itself. */
export async function until(check: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await sleep(50);
  }
}
