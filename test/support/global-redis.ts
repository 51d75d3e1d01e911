/**
 * vitest globalSetup: the tests' Redis. They use the one at 127.0.0.1:6379 (CI machines and developers
 * usually run one). When nothing answers there, a private `redis-server` is started on that port for the
 * run, as `npm start` does, and stopped afterwards. Without `redis-server` installed the run stops at once
 * with one line saying what to install, instead of hundreds of connection failures.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { Socket } from 'node:net';

const HOST = '127.0.0.1';

/** Whether something on HOST:port answers a RESP PING with +PONG. */
export async function pongs(port: number): Promise<boolean> {
  const socket = new Socket();
  try {
    socket.setTimeout(1_000);
    socket.connect(port, HOST);
    await once(socket, 'connect');
    socket.write('PING\r\n');
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    return chunk.toString().startsWith('+PONG');
  } catch {
    return false;
  } finally {
    socket.destroy();
  }
}

export class RedisMissingError extends Error {
  readonly code = 'REDIS_SERVER_NOT_INSTALLED';
}

/**
 * Redis for a test run on `port`: nothing to do when one answers; else a private redis-server started
 * there (returned, for the caller to stop). `PATH` is a parameter so the missing-binary case is testable.
 */
export async function ensureTestRedis(
  port: number,
  path = process.env.PATH ?? '',
): Promise<ChildProcess | undefined> {
  if (await pongs(port)) return undefined;
  const env = { ...process.env, PATH: path };
  if (spawnSync('/bin/sh', ['-c', 'command -v redis-server'], { stdio: 'ignore', env }).status !== 0) {
    throw new RedisMissingError(
      `npm test needs Redis: nothing answers at ${HOST}:${port} and redis-server is not installed. Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis).`,
    );
  }
  const args = ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no'];
  const child = spawn('redis-server', [...args, '--maxmemory-policy', 'noeviction'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env,
  });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      log += b.toString();
      if (log.includes('Ready to accept connections')) resolve();
    });
    child.once('exit', (code) =>
      reject(new Error(`redis-server exited (${code}) before it was ready:\n${log}`)),
    );
  });
  child.stdout!.resume();
  return child;
}

export async function stopRedis(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

let started: ChildProcess | undefined;

export async function setup(): Promise<void> {
  try {
    started = await ensureTestRedis(6379);
  } catch (err) {
    if (!(err instanceof RedisMissingError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
  if (started)
    process.stderr.write('no Redis at 127.0.0.1:6379: started a private redis-server for this run\n');
}

export async function teardown(): Promise<void> {
  await stopRedis(started);
}
