/**
 * A stand-in for the Hugging Face hub and its CDN, on 127.0.0.1, for tests: serves fixture bytes with
 * `X-Linked-Etag`, Range requests, redirects and connections cut mid-body. Test-only; nothing imports it
 * outside `*.test.ts`.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FixtureFile {
  body: Buffer;
  /** Advertised `X-Linked-Etag`; default the body's real sha256. `null`: a non-LFS file (git sha1 ETag only). */
  linkedEtag?: string | null;
}

export interface ServedRequest {
  method: string;
  path: string;
  host: string;
  headers: IncomingHttpHeaders;
  /** Body bytes the server wrote for this request. */
  sent: number;
}

export interface FixtureServerOptions {
  files: Record<string, FixtureFile>;
  /** Resolve URLs answer 302 to `/cdn/...` on the same host, on `localhost` (another origin), or serve directly. */
  redirect?: 'none' | 'same-host' | 'other-host';
  /** Absolute byte offset at which to drop the connection for this GET, or undefined to send everything. */
  cutAt?: (req: { path: string; start: number; getIndex: number }) => number | undefined;
  /** At the cut, `close` drops the connection; `stall` keeps it open and silent (an idle server). */
  cutMode?: 'close' | 'stall';
  /** Called once the bytes before a cut have been handed to the kernel. */
  onCut?: () => void;
  /** Forced status for a request (e.g. a 503 once); undefined serves normally. */
  statusFor?: (req: { method: string; path: string; index: number }) => number | undefined;
  /** Answer Range requests with a full 200, like a server without range support. */
  ignoreRange?: boolean;
  /** `<repo>@<branch or tag>` -> commit, answered at GET /api/models/<repo>/revision/<rev> as the hub does. */
  revisions?: Record<string, string>;
}

export interface FixtureServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `http://localhost:<port>`: the same server under another origin. */
  otherUrl: string;
  requests: ServedRequest[];
  gets(pathPart?: string): ServedRequest[];
  close(): Promise<void>;
}

const RESOLVE_PREFIX = '/cdn';

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function startFixtureServer(options: FixtureServerOptions): Promise<FixtureServer> {
  const requests: ServedRequest[] = [];
  let getIndex = 0;
  let port = 0;

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const record: ServedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      host: req.headers.host ?? '',
      headers: req.headers,
      sent: 0,
    };
    requests.push(record);
    const forced = options.statusFor?.({
      method: record.method,
      path: record.path,
      index: requests.length - 1,
    });
    if (forced !== undefined) {
      res.writeHead(forced, { 'content-length': '0' }).end();
      return;
    }
    const api = /^\/api\/models\/(.+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (api) {
      const sha = options.revisions?.[`${api[1]}@${decodeURIComponent(api[2]!)}`];
      if (!sha)
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"Revision not found"}');
      else
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: api[1], sha }));
      return;
    }
    const fromCdn = url.pathname.startsWith(`${RESOLVE_PREFIX}/`);
    const filePath = fromCdn ? url.pathname.slice(RESOLVE_PREFIX.length) : url.pathname;
    const file = options.files[filePath];
    if (!file) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Entry not found');
      return;
    }
    const lfs = file.linkedEtag !== null;
    const linked: Record<string, string> = lfs
      ? {
          'x-linked-etag': `"${file.linkedEtag ?? sha256Hex(file.body)}"`,
          'x-linked-size': String(file.body.length),
        }
      : {};
    const redirect = options.redirect ?? 'same-host';
    if (!fromCdn && lfs && redirect !== 'none') {
      const host = redirect === 'other-host' ? `http://localhost:${port}` : `http://127.0.0.1:${port}`;
      res
        .writeHead(302, {
          ...linked,
          location: `${host}${RESOLVE_PREFIX}${filePath}?sig=secret`,
          'content-length': '0',
        })
        .end();
      return;
    }
    // The CDN does not repeat the hub's linked headers; a direct answer (no redirect) does.
    serveBytes(req, res, file.body, fromCdn ? {} : linked, record, lfs, options, () => getIndex++);
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    otherUrl: `http://localhost:${port}`,
    requests,
    gets: (pathPart) =>
      requests.filter((r) => r.method === 'GET' && (!pathPart || r.path.includes(pathPart))),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function serveBytes(
  req: IncomingMessage,
  res: ServerResponse,
  body: Buffer,
  extra: Record<string, string>,
  record: ServedRequest,
  lfs: boolean,
  options: FixtureServerOptions,
  nextGetIndex: () => number,
): void {
  const etag = lfs ? `"cdn-${body.length}"` : `"${createHash('sha1').update(body).digest('hex')}"`;
  const range = options.ignoreRange ? undefined : req.headers.range?.match(/^bytes=(\d+)-$/);
  const start = range ? Number(range[1]) : 0;
  const headers = { ...extra, etag, 'accept-ranges': 'bytes' };
  if (range && start >= body.length) {
    res
      .writeHead(416, { ...headers, 'content-range': `bytes */${body.length}`, 'content-length': '0' })
      .end();
    return;
  }
  const status = range ? 206 : 200;
  const rangeHeaders = range ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {};
  res.writeHead(status, { ...headers, ...rangeHeaders, 'content-length': String(body.length - start) });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const cut = options.cutAt?.({ path: record.path, start, getIndex: nextGetIndex() });
  if (cut === undefined || cut >= body.length) {
    record.sent = body.length - start;
    res.end(body.subarray(start));
    return;
  }
  // Send up to the cut, then, once those bytes reached the kernel, kill the socket (a mid-body disconnect)
  // or leave it hanging (a stalled transfer, for idle timeouts and aborts).
  const chunk = body.subarray(start, Math.max(start, cut));
  record.sent = chunk.length;
  res.write(chunk, () => {
    if (options.cutMode !== 'stall') res.socket?.destroy();
    options.onCut?.();
  });
}
