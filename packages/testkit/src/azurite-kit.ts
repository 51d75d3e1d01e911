/**
 * Test kit: a private Azurite blob emulator on a free loopback port (`@embedpool/testkit/azurite-kit`);
 * `test/support/azurite.ts` re-exports it for the integration tests.
 * Only loopback traffic: it binds 127.0.0.1 and runs with `--disableTelemetry`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { REPO_ROOT } from './index';

/** The emulator's well-known account; public, documented, and accepted by nothing but an emulator. */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;

export interface Azurite {
  /** Explicit shared-key connection string for this instance (not `UseDevelopmentStorage=true`: the port is ours). */
  connectionString: string;
  /** `http://127.0.0.1:<port>/devstoreaccount1` */
  blobEndpoint: string;
  port: number;
  accountName: string;
  accountKey: string;
  /** Stops the emulator (SIGTERM, then SIGKILL). Its data stays on disk, so `restart()` brings it back. */
  stop(): Promise<void>;
  /** Stops it if it runs, then starts it again on the same port with the same data. */
  restart(): Promise<void>;
  /** `stop()` and delete the data directory; call once in `afterAll`. */
  dispose(): Promise<void>;
}

export interface StartAzuriteOptions {
  /**
   * Keep data on disk (a fresh temp dir) so it survives `restart()`; the default. `false` uses
   * `--inMemoryPersistence`, which is faster but loses every blob on restart.
   */
  persistent?: boolean;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
    sock.setTimeout(1_000, () => done(false));
  });
}

/** Any HTTP answer (Azurite says 400/403 to an unsigned request) means it is serving. */
function answersHttp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port, path: `/${AZURITE_ACCOUNT}?comp=list`, timeout: 1_000 },
      (res) => {
        res.resume();
        resolve(true);
      },
    );
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
    req.end();
  });
}

/**
 * Starts a private Azurite blob emulator on a free loopback port, for tests. Only loopback traffic:
 * it binds 127.0.0.1 and runs with telemetry off.
 */
export async function startAzurite(options: StartAzuriteOptions = {}): Promise<Azurite> {
  const bin = join(REPO_ROOT, 'node_modules/.bin/azurite-blob');
  if (!existsSync(bin))
    throw new Error(`azurite-blob not found at ${bin}; is the azurite devDependency installed?`);
  const persistent = options.persistent ?? true;
  const port = await freePort();
  const location = await mkdtemp(join(tmpdir(), 'embedpool-azurite-'));
  const blobEndpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  const connectionString =
    `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};` +
    `BlobEndpoint=${blobEndpoint};`;

  let child: ChildProcess | undefined;
  const killOnExit = () => child?.kill('SIGKILL');
  process.once('exit', killOnExit);

  const start = async (): Promise<void> => {
    const args = [
      '--blobHost',
      '127.0.0.1',
      '--blobPort',
      String(port),
      '--location',
      location,
      '--silent',
      '--skipApiVersionCheck',
      '--loose',
      '--disableTelemetry',
      ...(persistent ? [] : ['--inMemoryPersistence']),
    ];
    const proc = spawn(bin, args, { cwd: location, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let output = '';
    const collect = (d: Buffer) => {
      output = (output + d.toString()).slice(-4_000);
    };
    proc.stdout!.on('data', collect);
    proc.stderr!.on('data', collect);
    let exited = false;
    proc.once('exit', () => {
      exited = true;
    });

    // Poll until it answers HTTP: bounded, short steps, no fixed wait.
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (let step = 0; ; step++) {
      if (exited) throw new Error(`azurite-blob exited during start (code ${proc.exitCode}): ${output}`);
      if (await answersHttp(port)) return;
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(
          `azurite-blob did not listen on 127.0.0.1:${port} within ${READY_TIMEOUT_MS} ms: ${output}`,
        );
      }
      await delay(Math.min(25 * 2 ** step, 200));
    }
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = once(proc, 'exit');
    // SIGTERM lets Azurite flush its metadata to disk so the blobs survive a restart.
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
    // The port is free once nothing answers on it (bounded: a stuck port fails the test, not hangs it).
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (await canConnect(port)) {
      if (Date.now() > deadline)
        throw new Error(`127.0.0.1:${port} still accepts connections after azurite stopped`);
      await delay(20);
    }
  };

  try {
    await start();
  } catch (err) {
    await stop();
    process.removeListener('exit', killOnExit);
    await rm(location, { recursive: true, force: true });
    throw err;
  }
  return {
    connectionString,
    blobEndpoint,
    port,
    accountName: AZURITE_ACCOUNT,
    accountKey: AZURITE_KEY,
    stop,
    restart: async () => {
      await stop();
      await start();
    },
    dispose: async () => {
      await stop();
      process.removeListener('exit', killOnExit);
      await rm(location, { recursive: true, force: true });
    },
  };
}
