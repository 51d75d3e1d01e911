import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';

/** A free loopback port (the kernel's pick, released at once for the child to take). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as net.AddressInfo;
  srv.close();
  await once(srv, 'close');
  return port;
}

/**
 * A throw-away redis-server child for fault tests: the shared Redis other tests use is never stopped.
 * No persistence, so a restart comes back empty, as after a real crash without AOF.
 */
export class PrivateRedis {
  private child: ChildProcess | undefined;

  /** A handle for a port (to probe it, or to start a server there); `PrivateRedis.start()` picks a port and starts one. */
  /** `extraArgs` follow the defaults and win over them (e.g. `--appendonly yes --dir <tmp>`). */
  constructor(
    readonly port: number,
    private readonly extraArgs: readonly string[] = [],
  ) {}

  static async start(extraArgs: readonly string[] = []): Promise<PrivateRedis> {
    const r = new PrivateRedis(await freePort(), extraArgs);
    await r.start();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** The server's process id (-1 when not running): the bench reads its CPU from /proc. */
  get pid(): number {
    return this.child?.pid ?? -1;
  }

  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        ...this.extraArgs,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    // A test process that ends without its clean-up (a hook timed out) must not leave the server behind.
    const onExit = () => child.kill('SIGKILL');
    process.once('exit', onExit);
    child.once('exit', () => process.off('exit', onExit));
    let log = '';
    const onErr = (chunk: Buffer) => {
      log += chunk.toString();
    };
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        log += chunk.toString();
        if (log.includes('Ready to accept connections')) {
          child.stdout?.off('data', onData);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onErr);
      child.once('exit', (code) => reject(new Error(`redis-server exited (${code}) before ready:\n${log}`)));
      child.once('error', (err) =>
        reject(new Error(`cannot start redis-server (is it installed?): ${err.message}`)),
      );
    });
    // Ready: stop keeping its log, but keep draining both pipes so a chatty server never blocks on a full one.
    child.stderr?.off('data', onErr);
    child.stdout?.resume();
    child.stderr?.resume();
  }

  /** SIGTERM and wait: Redis exits as on a clean shutdown. */
  stop(): Promise<void> {
    return this.end('SIGTERM');
  }

  /** SIGKILL: Redis vanishes as in a crash, without a goodbye to its clients. */
  kill(): Promise<void> {
    return this.end('SIGKILL');
  }

  private async end(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
    this.child = undefined;
  }

  /** Whether a Redis answers PING on this port right now. */
  async ping(): Promise<boolean> {
    const { Redis } = await import('ioredis');
    const r = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => {});
    try {
      await r.connect();
      return (await r.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      r.disconnect();
    }
  }
}
