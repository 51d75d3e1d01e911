#!/usr/bin/env node
// Container health check (Docker HEALTHCHECK, compose healthcheck): GET /healthz on this container's own
// listener and exit 0 on a 2xx answer, 1 otherwise. Plain node, no curl/wget in the slim images.
//
//   node infra/docker/healthcheck.mjs api      # http://<HOST>:<PORT>/healthz (defaults 127.0.0.1:8080)
//   node infra/docker/healthcheck.mjs worker   # http://<WORKER_METRICS_HOST>:<WORKER_METRICS_PORT>/healthz
//   node infra/docker/healthcheck.mjs api /readyz
//
// The address and port come from the same variables the process listens on (README "Configuration"), so the
// check follows any override. A wildcard listen address (0.0.0.0, ::) is checked on loopback.

const TIMEOUT_MS = 2500;
const kind = process.argv[2] ?? 'api';
const path = process.argv[3] ?? '/healthz';

const listeners = {
  api: { host: process.env.HOST, port: process.env.PORT, defaultPort: '8080' },
  worker: {
    host: process.env.WORKER_METRICS_HOST,
    port: process.env.WORKER_METRICS_PORT,
    defaultPort: '9464',
  },
};

const listener = listeners[kind];
if (!listener) {
  console.error(`healthcheck: unknown process kind "${kind}" (api or worker)`);
  process.exit(2);
}
const port = listener.port || listener.defaultPort;
if (port === '0') {
  console.error(`healthcheck: the ${kind} listener is disabled (port 0): nothing to check`);
  process.exit(1);
}
const wildcard = ['', '0.0.0.0', '::', '[::]'];
const rawHost = listener.host ?? '';
const host = wildcard.includes(rawHost) ? '127.0.0.1' : rawHost.includes(':') ? `[${rawHost}]` : rawHost;

try {
  const res = await fetch(`http://${host}:${port}${path}`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
  if (!res.ok) console.error(`healthcheck: ${path} answered ${res.status}`);
  process.exit(res.ok ? 0 : 1);
} catch (err) {
  console.error(
    `healthcheck: ${path} unreachable on ${host}:${port}: ${err instanceof Error ? err.message : err}`,
  );
  process.exit(1);
}
