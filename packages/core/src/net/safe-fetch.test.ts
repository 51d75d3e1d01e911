/**
 * Network tests, loopback only. Every URL here is a loopback literal or a name answered by a fake
 * resolver with loopback addresses only, and dns.lookup is replaced by a tripwire, so even a broken
 * guard could reach nothing but the listeners started here.
 */
import { once } from 'node:events';
import net from 'node:net';
import {
  fakeResolver,
  installConnectTripwire,
  installDnsTripwire,
  type LoopbackServer,
  startLoopbackServer,
} from '@embedpool/testkit/loopback-test-kit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EmbedpoolError } from '../errors';
import { safeFetch, safeFetchStream } from './safe-fetch';
import { createUrlPolicy, type UrlPolicyOptions } from './url-policy';

const LIMITS = { connectTimeoutMs: 300, headersTimeoutMs: 300, totalTimeoutMs: 2000, maxBytes: 64 * 1024 };

async function rejection(promise: Promise<unknown>): Promise<EmbedpoolError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EmbedpoolError);
  return err as EmbedpoolError;
}

let dnsTripwire: ReturnType<typeof installDnsTripwire>;
let connectTripwire: ReturnType<typeof installConnectTripwire>;
beforeAll(() => {
  dnsTripwire = installDnsTripwire();
  connectTripwire = installConnectTripwire();
});
afterEach(() => {
  // No fetch may ever fall back to system DNS or aim a socket off loopback.
  expect(dnsTripwire.trips).toEqual([]);
  expect(connectTripwire.violations).toEqual([]);
});
afterAll(() => {
  connectTripwire.restore();
  dnsTripwire.restore();
});

describe('the test tripwires themselves', () => {
  it('refuse a socket aimed off loopback before anything is sent', async () => {
    // 0.0.0.0 is not a loopback address to the tripwire; even if it failed, Linux keeps 0.0.0.0 local.
    const socket = net.connect({ host: '0.0.0.0', port: 9 });
    const [err] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ETRIPWIRE');
    const named = net.connect({
      host: 'canary.test',
      port: 9,
      lookup: (_h, _o, cb) => cb(null, [{ address: '0.0.0.0', family: 4 }]),
    });
    const [err2] = (await once(named, 'error')) as [NodeJS.ErrnoException];
    expect(err2.code).toBe('ETRIPWIRE');
    expect(connectTripwire.violations).toEqual([
      '0.0.0.0',
      'canary.test -> [{"address":"0.0.0.0","family":4}]',
    ]);
    connectTripwire.violations.length = 0;
  });
});

describe('refusals: the detecting listener never sees a connection', () => {
  /** Listens on 127.0.0.1:port; no test here may cause a single connection to it. */
  let detector: LoopbackServer;
  /** The same port on ::1, when this machine has IPv6 loopback. */
  let detector6: LoopbackServer | undefined;
  /** An allowed listener (via allow list 127.0.0.2/32) on 127.0.0.2 with the same port. */
  let allowed: LoopbackServer;
  let port: number;

  beforeAll(async () => {
    // 127.0.0.2 and 127.0.0.1 must share a port so that one URL could reach either.
    for (let attempt = 0; ; attempt++) {
      detector = await startLoopbackServer('127.0.0.1', (_req, res) => res.end('detector'));
      try {
        allowed = await startLoopbackServer(
          '127.0.0.2',
          (req, res) => {
            if (req.url === '/to-denied') res.writeHead(302, { location: detector.url('/') }).end();
            else if (req.url === '/to-denied-hex')
              res.writeHead(302, { location: `http://0x7f.1:${port}/` }).end();
            else if (req.url === '/to-rebind')
              res.writeHead(302, { location: `http://rebind.test:${port}/` }).end();
            else res.end('allowed');
          },
          detector.port,
        );
        break;
      } catch (err) {
        await detector.close();
        if (attempt >= 5) throw err;
      }
    }
    port = detector.port;
    detector6 = await startLoopbackServer('::1', (_req, res) => res.end('detector6'), port).catch(
      () => undefined,
    );
  });

  afterEach(() => {
    expect(detector.connections).toBe(0);
    expect(detector6?.connections ?? 0).toBe(0);
  });

  afterAll(async () => {
    await Promise.all([detector.close(), allowed.close(), detector6?.close()]);
  });

  const defaultPolicy = (extra: Partial<UrlPolicyOptions> = {}) =>
    createUrlPolicy({
      ...LIMITS,
      resolver: fakeResolver({ localhost: ['127.0.0.1', '::1'], 'loop.test': ['127.0.0.1'] }),
      ...extra,
    });

  const literalCases: [string, (p: number) => string, string][] = [
    ['127.0.0.1', (p) => `http://127.0.0.1:${p}/`, 'loopback'],
    ['127.1', (p) => `http://127.1:${p}/`, 'loopback'],
    ['localhost', (p) => `http://localhost:${p}/`, 'loopback'],
    ['a name answering 127.0.0.1', (p) => `http://loop.test:${p}/`, 'loopback'],
    ['[::ffff:127.0.0.1]', (p) => `http://[::ffff:127.0.0.1]:${p}/`, 'loopback'],
    ['decimal 2130706433', (p) => `http://2130706433:${p}/`, 'loopback'],
    ['octal 0177.0.0.1', (p) => `http://0177.0.0.1:${p}/`, 'loopback'],
    ['hex 0x7f.1', (p) => `http://0x7f.1:${p}/`, 'loopback'],
    ['hex 0x7f000001', (p) => `http://0x7f000001:${p}/`, 'loopback'],
    ['0.0.0.0 (reaches loopback on Linux)', (p) => `http://0.0.0.0:${p}/`, 'unspecified'],
  ];

  it.each(literalCases)('refuses %s with the default policy', async (_name, url, rule) => {
    const err = await rejection(safeFetch(url(port), defaultPolicy()));
    expect(err.code).toBe('URL_ADDRESS_NOT_ALLOWED');
    expect(err.details).toMatchObject({ rule });
    expect(err.message).toContain(`is ${rule} (denied`);
  });

  // The refusal comes before any connection, so it holds with or without IPv6 here; where ::1 can listen,
  // its detector also proves nothing reached it (afterAll).
  it('refuses [::1] with the default policy', async () => {
    const err = await rejection(safeFetch(`http://[::1]:${port}/`, defaultPolicy()));
    expect(err.details).toMatchObject({ rule: 'loopback', address: '::1' });
  });

  it('refuses a POST with a body to a denied address', async () => {
    const err = await rejection(
      safeFetch(`http://127.0.0.1:${port}/`, defaultPolicy(), { method: 'POST', body: '{"event":"done"}' }),
    );
    expect(err.code).toBe('URL_ADDRESS_NOT_ALLOWED');
  });

  it('DNS rebinding: connects to the address that was checked, never asks again', async () => {
    // First answer 127.0.0.2 (allowed), every later answer 127.0.0.1 (denied).
    const resolver = fakeResolver({ 'rebind.test': (call) => (call === 1 ? ['127.0.0.2'] : ['127.0.0.1']) });
    const policy = defaultPolicy({ allow: ['127.0.0.2/32'], resolver });
    const res = await safeFetch(`http://rebind.test:${port}/`, policy);
    expect(res.body.toString()).toBe('allowed');
    expect(resolver.calls.get('rebind.test')).toBe(1);
  });

  it('DNS rebinding across a redirect: the next hop is re-resolved, re-checked and refused', async () => {
    const resolver = fakeResolver({ 'rebind.test': (call) => (call === 1 ? ['127.0.0.2'] : ['127.0.0.1']) });
    const policy = defaultPolicy({ allow: ['127.0.0.2/32'], resolver });
    const err = await rejection(safeFetch(`http://rebind.test:${port}/to-rebind`, policy));
    expect(err.code).toBe('URL_ADDRESS_NOT_ALLOWED');
    expect(err.details).toMatchObject({ rule: 'loopback', address: '127.0.0.1', host: 'rebind.test' });
    expect(resolver.calls.get('rebind.test')).toBe(2);
  });

  it.each(['/to-denied', '/to-denied-hex'])(
    'refuses a redirect from an allowed listener to a denied one (%s)',
    async (path) => {
      const before = allowed.connections;
      const err = await rejection(safeFetch(allowed.url(path), defaultPolicy({ allow: ['127.0.0.2/32'] })));
      expect(err.code).toBe('URL_ADDRESS_NOT_ALLOWED');
      expect(err.details).toMatchObject({ rule: 'loopback', address: '127.0.0.1' });
      expect(allowed.connections).toBe(before + 1);
    },
  );
});

describe('limits, with allow list 127.0.0.0/8', () => {
  let app: LoopbackServer;
  let other: LoopbackServer;
  /** Server-side responses, so tests can await the client hanging up. */
  const closed = new Map<string, Promise<unknown>>();

  beforeAll(async () => {
    other = await startLoopbackServer('127.0.0.1', (req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(req.headers));
    });
    app = await startLoopbackServer('127.0.0.1', (req, res) => {
      const path = req.url ?? '/';
      closed.set(path, once(res, 'close'));
      const redirect = /^\/r\/(\d+)$/.exec(path);
      if (path === '/ok') {
        res.setHeader('content-type', 'text/plain');
        res.end('hello world');
      } else if (path === '/echo') {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => res.end(`${req.method} ${Buffer.concat(chunks).toString()}`));
      } else if (path === '/headers') {
        res.end(JSON.stringify(req.headers));
      } else if (path === '/stall-headers') {
        // Never answers.
      } else if (path === '/stall-body') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.write('first bytes');
      } else if (path === '/trickle') {
        res.writeHead(200);
        const timer = setInterval(() => res.write('.'), 20);
        res.on('close', () => clearInterval(timer));
      } else if (path === '/forever') {
        res.writeHead(200);
        const chunk = Buffer.alloc(16 * 1024, 0x61);
        const pump = () => {
          while (!res.destroyed && res.write(chunk)) {}
        };
        res.on('drain', pump);
        pump();
      } else if (path === '/big-declared') {
        res.writeHead(200, { 'content-length': String(10_000_000) });
        res.write('x');
      } else if (path === '/exact') {
        res.end(Buffer.alloc(LIMITS.maxBytes, 0x62));
      } else if (path === '/404') {
        res.writeHead(404).end('nope');
      } else if (path === '/cross') {
        res.writeHead(302, { location: other.url('/') }).end();
      } else if (path === '/same') {
        res.writeHead(307, { location: '/headers' }).end();
      } else if (redirect) {
        const n = Number(redirect[1]);
        if (n === 0) res.end('landed');
        else res.writeHead(302, { location: `/r/${n - 1}` }).end();
      } else {
        res.writeHead(500).end();
      }
    });
  });

  afterEach(async () => {
    // Every connection the client opened has been closed again: nothing leaks.
    await app.idle();
    await other.idle();
    closed.clear();
  });

  afterAll(async () => {
    await Promise.all([app.close(), other.close()]);
  });

  const policy = (extra: Partial<UrlPolicyOptions> = {}) =>
    createUrlPolicy({ ...LIMITS, allow: ['127.0.0.0/8'], resolver: fakeResolver({}), ...extra });

  it('returns status, headers and body on success', async () => {
    const res = await safeFetch(app.url('/ok'), policy());
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain');
    expect(res.body.toString()).toBe('hello world');
    expect(res.finalUrl).toBe(app.url('/ok'));
  });

  it('accepts a body of exactly maxBytes', async () => {
    const res = await safeFetch(app.url('/exact'), policy());
    expect(res.body.length).toBe(LIMITS.maxBytes);
  });

  it('POSTs a body', async () => {
    const res = await safeFetch(app.url('/echo'), policy(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"ok":true}',
    });
    expect(res.body.toString()).toBe('POST {"ok":true}');
  });

  it('cuts a body that stalls after the headers (idle timeout)', async () => {
    const err = await rejection(safeFetch(app.url('/stall-body'), policy({ bodyTimeoutMs: 200 })));
    expect(err.code).toBe('URL_TIMEOUT');
    expect(err.details).toMatchObject({ timeout: 'body' });
    await closed.get('/stall-body');
  });

  it('cuts a response whose headers never come', async () => {
    const err = await rejection(safeFetch(app.url('/stall-headers'), policy({ headersTimeoutMs: 200 })));
    expect(err.code).toBe('URL_TIMEOUT');
    expect(err.details).toMatchObject({ timeout: 'headers' });
  });

  it('cuts a body that trickles forever (total deadline)', async () => {
    const err = await rejection(
      safeFetch(app.url('/trickle'), policy({ totalTimeoutMs: 400, bodyTimeoutMs: 300 })),
    );
    expect(err.code).toBe('URL_TIMEOUT');
    expect(err.details).toMatchObject({ timeout: 'total', ms: 400 });
    await closed.get('/trickle');
  });

  it('cuts a connection whose TLS handshake never completes (connect timeout)', async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => sockets.add(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    try {
      const err = await rejection(safeFetch(`https://127.0.0.1:${port}/`, policy({ connectTimeoutMs: 200 })));
      expect(err.code).toBe('URL_TIMEOUT');
      expect(err.details).toMatchObject({ timeout: 'connect' });
      expect(sockets.size).toBe(1);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('aborts a body that streams forever once the byte cap is passed', async () => {
    const err = await rejection(safeFetch(app.url('/forever'), policy()));
    expect(err.code).toBe('URL_TOO_LARGE');
    expect(err.details).toMatchObject({ maxBytes: LIMITS.maxBytes });
    await closed.get('/forever');
  });

  it('refuses a Content-Length over the cap before reading the body', async () => {
    const err = await rejection(safeFetch(app.url('/big-declared'), policy()));
    expect(err.code).toBe('URL_TOO_LARGE');
    expect(err.details).toMatchObject({ contentLength: 10_000_000, maxBytes: LIMITS.maxBytes });
    await closed.get('/big-declared');
  });

  it('maps a 404 to URL_HTTP_STATUS with the status', async () => {
    const err = await rejection(safeFetch(app.url('/404'), policy()));
    expect(err.code).toBe('URL_HTTP_STATUS');
    expect(err.details).toEqual({ status: 404 });
  });

  it('follows up to maxRedirects redirects', async () => {
    const res = await safeFetch(app.url('/r/3'), policy());
    expect(res.body.toString()).toBe('landed');
    expect(res.finalUrl).toBe(app.url('/r/0'));
  });

  it('refuses a chain of 4 redirects with URL_TOO_MANY_REDIRECTS', async () => {
    const before = app.connections;
    const err = await rejection(safeFetch(app.url('/r/4'), policy()));
    expect(err.code).toBe('URL_TOO_MANY_REDIRECTS');
    expect(app.connections - before).toBe(4);
    expect((await rejection(safeFetch(app.url('/r/1'), policy({ maxRedirects: 0 })))).code).toBe(
      'URL_TOO_MANY_REDIRECTS',
    );
  });

  it('does not follow redirects for POST', async () => {
    const err = await rejection(safeFetch(app.url('/r/1'), policy(), { method: 'POST', body: 'x' }));
    expect(err.code).toBe('URL_HTTP_STATUS');
    expect(err.details).toEqual({ status: 302 });
  });

  it('keeps credentials on same-origin redirects and drops them across origins', async () => {
    const headers = { authorization: 'Bearer secret', 'x-trace': 't1' };
    const same = JSON.parse((await safeFetch(app.url('/same'), policy(), { headers })).body.toString());
    expect(same).toMatchObject({ authorization: 'Bearer secret', 'x-trace': 't1' });
    const cross = JSON.parse((await safeFetch(app.url('/cross'), policy(), { headers })).body.toString());
    expect(cross.authorization).toBeUndefined();
    expect(cross['x-trace']).toBe('t1');
  });

  it('refuses credentials in the URL and non-http schemes without connecting', async () => {
    const before = app.connections;
    const url = new URL(app.url('/ok'));
    url.username = 'user';
    url.password = 'pass';
    expect((await rejection(safeFetch(url.href, policy()))).code).toBe('URL_CREDENTIALS_NOT_ALLOWED');
    expect((await rejection(safeFetch(`ftp://127.0.0.1:${app.port}/`, policy()))).code).toBe(
      'URL_SCHEME_NOT_ALLOWED',
    );
    expect(app.connections).toBe(before);
  });

  it('streams: the body can be consumed incrementally and abandoned', async () => {
    const res = await safeFetchStream(app.url('/forever'), policy({ maxBytes: 10_000_000 }));
    let seen = 0;
    for await (const chunk of res.body) {
      seen += (chunk as Buffer).length;
      if (seen >= 32 * 1024) break;
    }
    expect(seen).toBeGreaterThanOrEqual(32 * 1024);
    await closed.get('/forever');
  });

  it("rejects with the caller's abort reason", async () => {
    const controller = new AbortController();
    const pending = safeFetch(app.url('/stall-headers'), policy({ headersTimeoutMs: 5000 }), {
      signal: controller.signal,
    });
    const reason = new Error('caller gave up');
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
  });

  it('leaves no timers or sockets behind, whatever the outcome', async () => {
    const count = (kind: string) => process.getActiveResourcesInfo().filter((r) => r === kind).length;
    const timers = count('Timeout');
    const sockets = count('TCPSocketWrap');
    const p = policy({ bodyTimeoutMs: 200, totalTimeoutMs: 1000 });
    await safeFetch(app.url('/ok'), p);
    await safeFetch(app.url('/r/2'), p);
    for (const path of ['/404', '/forever', '/big-declared', '/stall-body', '/r/9']) {
      await rejection(safeFetch(app.url(path), p));
    }
    const streamed = await safeFetchStream(app.url('/forever'), policy({ maxBytes: 10_000_000 }));
    streamed.body.destroy();
    await once(streamed.body, 'close');
    await app.idle();
    expect(count('Timeout')).toBeLessThanOrEqual(timers);
    expect(count('TCPSocketWrap')).toBeLessThanOrEqual(sockets);
  });
});
