/**
 * Image URLs that never finish: headers then silence, no headers at all, a slow drip that never ends,
 * an endless fast stream, a lying Content-Length, an empty body. The fetch time-outs and the byte cap
 * (FETCH_* and MAX_IMAGE_BYTES, set small here) cut each one off, the worker lets go of the connection,
 * and the next good request is served.
 */
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, testConfig } from '../support/stack';
import {
  call,
  goodImage,
  guardNetwork,
  type LoopbackServer,
  scoreBody,
  startLoopbackServer,
  until,
} from './support';

guardNetwork();

const HEADERS_MS = 400;
const TOTAL_MS = 1500;
const MAX_BYTES = 1024 * 1024;

describe('URLs that stall or stream forever', () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  let server: LoopbackServer;
  const timers = new Set<NodeJS.Timeout>();
  const open = new Set<ServerResponse>();
  let sent = 0;

  beforeAll(async () => {
    server = await startLoopbackServer('127.0.0.2', (req, res) => {
      open.add(res);
      res.on('close', () => open.delete(res));
      const path = req.url ?? '/';
      if (path === '/good.jpg') return res.end(readFileSync(goodImage.path));
      if (path === '/no-headers') return; // reads the request, never answers
      if (path === '/empty') return res.writeHead(200, { 'content-type': 'image/jpeg' }).end();
      if (path === '/lying-length') {
        res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': String(10 * 1024 ** 3) });
        return res.write(Buffer.alloc(1024));
      }
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      if (path === '/stall') return res.write(Buffer.alloc(100, 0xff)); // headers and a little, then silence
      if (path === '/drip') {
        // A byte every 100 ms: never idle long enough for the body time-out, never done.
        const t = setInterval(() => res.write(Buffer.alloc(1, 0xff)), 100);
        timers.add(t);
        res.on('close', () => clearInterval(t));
        return;
      }
      if (path === '/endless') {
        const chunk = Buffer.alloc(64 * 1024, 0xff);
        const pump = () => {
          while (!res.destroyed && res.write(chunk)) sent += chunk.length;
        };
        res.on('drain', pump);
        pump();
        return;
      }
      res.writeHead(404).end();
    });
    stack = await startStack(
      testConfig({
        FETCH_ALLOW: '127.0.0.2/32',
        FETCH_CONNECT_TIMEOUT_MS: '500',
        FETCH_HEADERS_TIMEOUT_MS: String(HEADERS_MS),
        FETCH_TOTAL_TIMEOUT_MS: String(TOTAL_MS),
        MAX_IMAGE_BYTES: String(MAX_BYTES),
      }),
    );
  });
  afterAll(async () => {
    for (const t of timers) clearInterval(t);
    await stack?.stop();
    await server?.close();
  });

  const cases: [string, string, string, RegExp, number][] = [
    ['headers, then silence', '/stall', 'URL_TIMEOUT', /body idle timeout/, HEADERS_MS],
    ['no headers at all', '/no-headers', 'URL_TIMEOUT', /response headers timeout/, HEADERS_MS],
    ['a slow drip that never ends', '/drip', 'URL_TIMEOUT', /total timeout/, TOTAL_MS],
    ['an endless fast stream', '/endless', 'URL_TOO_LARGE', /exceeds 1048576 bytes/, 0],
    ['a 10 GiB Content-Length', '/lying-length', 'URL_TOO_LARGE', /Content-Length/, 0],
  ];

  it.each(cases)(
    '%s (%s): cut off with %s, the connection released',
    async (_name, path, code, message, atLeast) => {
      const started = Date.now();
      const sentBefore = sent;
      const { status, json } = await call(`${stack.api.url}/score`, { body: scoreBody([server.url(path)]) });
      const took = Date.now() - started;
      expect(status).toBe(400);
      expect(json.error.code).toBe(code);
      expect(json.error.message).toMatch(message);
      expect(took).toBeGreaterThanOrEqual(atLeast - 50);
      // Bounded by the total time-out, not by the server's patience.
      expect(took).toBeLessThan(TOTAL_MS + 3_000);
      // The worker hung up: no response of ours is left open on the server.
      await until(() => open.size === 0, 5_000);
      if (path === '/endless') {
        // The cap stopped the download near MAX_IMAGE_BYTES (plus what socket buffers held).
        expect(sent - sentBefore).toBeLessThan(MAX_BYTES + 16 * 1024 * 1024);
      }
    },
  );

  it('an empty body is a clear per-image error', async () => {
    const { status, json } = await call(`${stack.api.url}/score`, {
      body: scoreBody([server.url('/empty')]),
    });
    expect(status).toBe(400);
    expect(json.error.code).toBe('IMAGE_EMPTY');
  });

  it('all of them at once, beside a good image: only they fail, and a good request then succeeds', async () => {
    const urls = ['/stall', '/no-headers', '/drip', '/endless', '/good.jpg'].map((p) => server.url(p));
    const { status, json } = await call(`${stack.api.url}/score`, { body: scoreBody(urls) });
    expect(status).toBe(400);
    expect(json.error.failures.map((f: { row: number }) => f.row)).toEqual([0, 1, 2, 3]);
    await until(() => open.size === 0, 5_000);

    const ok = await call(`${stack.api.url}/score`, { body: scoreBody([server.url('/good.jpg')]) });
    expect(ok.status).toBe(200);
    expect(ok.json[0].image_features.length).toBeGreaterThan(0);
    expect((await call(`${stack.api.url}/readyz`)).status).toBe(200);
  });
});
