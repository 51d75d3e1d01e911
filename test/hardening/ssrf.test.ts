/**
 * SSRF at the network level, through the real API and worker: image URLs that spell a loopback (or
 * "this host") address in every way a URL parser accepts, and a redirect from an allowed host to a
 * denied one. Each must be refused with a 400 naming the rule, and a listener on the target address
 * must see no connection at all. Name-level tricks (DNS rebinding, mixed answers) are covered against
 * the net module itself in packages/core/src/net/safe-fetch.test.ts.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, testConfig } from '../support/stack';
import {
  call,
  goodImage,
  guardNetwork,
  type LoopbackServer,
  scoreBody,
  startLoopbackServer,
} from './support';

guardNetwork();

let v4: LoopbackServer;
let v6: LoopbackServer | undefined;
const trap = () => (v4?.connections ?? 0) + (v6?.connections ?? 0);

beforeAll(async () => {
  // Detectors: whatever reaches them is a failure. Same port on ::1 when this machine has IPv6.
  v4 = await startLoopbackServer('127.0.0.1', (_req, res) => res.end(readFileSync(goodImage.path)));
  v6 = await startLoopbackServer('::1', (_req, res) => res.end(), v4.port).catch(() => undefined);
});
afterAll(async () => {
  await v4?.close();
  await v6?.close();
});

function spellings(port: number): [string, string, RegExp][] {
  return [
    ['dotted quad', `http://127.0.0.1:${port}/a.jpg`, /loopback/],
    ['short form 127.1', `http://127.1:${port}/a.jpg`, /loopback/],
    ['localhost', `http://localhost:${port}/a.jpg`, /loopback/],
    ['IPv6 [::1]', `http://[::1]:${port}/a.jpg`, /loopback/],
    ['IPv4-mapped IPv6', `http://[::ffff:127.0.0.1]:${port}/a.jpg`, /loopback/],
    ['decimal 2130706433', `http://2130706433:${port}/a.jpg`, /loopback/],
    ['octal 0177.0.0.1', `http://0177.0.0.1:${port}/a.jpg`, /loopback/],
    ['octal 017700000001', `http://017700000001:${port}/a.jpg`, /loopback/],
    ['hex 0x7f000001', `http://0x7f000001:${port}/a.jpg`, /loopback/],
    ['dotted hex 0x7f.0x0.0x0.0x1', `http://0x7f.0x0.0x0.0x1:${port}/a.jpg`, /loopback/],
    ['mixed 127.0.1 (class B form)', `http://127.0.1:${port}/a.jpg`, /loopback/],
    ['0.0.0.0 (reaches this host on Linux)', `http://0.0.0.0:${port}/a.jpg`, /unspecified/],
    ['[::] (reaches this host)', `http://[::]:${port}/a.jpg`, /unspecified/],
  ];
}

describe('POST /score with FETCH_ALLOW unset: loopback in every spelling', () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  beforeAll(async () => {
    stack = await startStack(testConfig({}));
  });
  afterAll(() => stack?.stop());

  it.each(spellings(0).map(([name]) => name))('%s: 400 naming the rule, no connection', async (name) => {
    const [, url, rule] = spellings(v4.port).find(([n]) => n === name)!;
    const before = trap();
    const { status, json } = await call(`${stack.api.url}/score`, { body: scoreBody([url]) });
    expect(status).toBe(400);
    expect(json.error.code).toBe('URL_ADDRESS_NOT_ALLOWED');
    expect(json.error.row).toBe(0);
    expect(json.error.message).toMatch(rule);
    expect(trap() - before).toBe(0);
  });

  it('refuses all of them in one request, row by row, and the detectors saw nothing', async () => {
    const urls = spellings(v4.port).map(([, url]) => url);
    const { status, json } = await call(`${stack.api.url}/score`, { body: scoreBody(urls) });
    expect(status).toBe(400);
    expect(json.error.failures).toHaveLength(urls.length);
    for (const f of json.error.failures) expect(f.code).toBe('URL_ADDRESS_NOT_ALLOWED');
    expect(trap()).toBe(0);
  });
});

describe('an allowed loopback host (FETCH_ALLOW=127.0.0.2/32) redirecting to a denied one', () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  let allowed: LoopbackServer;
  beforeAll(async () => {
    allowed = await startLoopbackServer('127.0.0.2', (req, res) => {
      const target = decodeURIComponent((req.url ?? '/').slice('/to/'.length));
      if (req.url?.startsWith('/to/')) res.writeHead(302, { location: target }).end();
      else res.end(readFileSync(goodImage.path));
    });
    stack = await startStack(testConfig({ FETCH_ALLOW: '127.0.0.2/32' }));
  });
  afterAll(async () => {
    await stack?.stop();
    await allowed?.close();
  });

  it('fetches from the allowed host itself (the control)', async () => {
    const { status, json } = await call(`${stack.api.url}/score`, {
      body: scoreBody([allowed.url('/a.jpg')]),
    });
    expect(status).toBe(200);
    expect(json[0].image_features.length).toBeGreaterThan(0);
  });

  it.each([
    ['127.0.0.1', (p: number) => `http://127.0.0.1:${p}/a.jpg`],
    ['localhost', (p: number) => `http://localhost:${p}/a.jpg`],
    ['[::1]', (p: number) => `http://[::1]:${p}/a.jpg`],
    ['decimal', (p: number) => `http://2130706433:${p}/a.jpg`],
  ])('refuses the redirect hop to %s: 400 naming the rule, the target sees no connection', async (_n, to) => {
    const before = trap();
    const hops = allowed.connections;
    const url = allowed.url(`/to/${encodeURIComponent(to(v4.port))}`);
    const { status, json } = await call(`${stack.api.url}/score`, { body: scoreBody([url]) });
    expect(status).toBe(400);
    expect(json.error.code).toBe('URL_ADDRESS_NOT_ALLOWED');
    expect(json.error.message).toMatch(/loopback/);
    // The first hop was made (it is allowed); the second never was.
    expect(allowed.connections - hops).toBeGreaterThanOrEqual(1);
    expect(trap() - before).toBe(0);
  });
});
