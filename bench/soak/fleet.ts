import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { SERVICE_NODE_FLAGS } from '@embedpool/core/process';
import type { RedisSettings } from '@embedpool/core/queue';
import { freePort, PrivateRedis, PrivateRedisCluster } from '@embedpool/testkit';

const REPO_ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(REPO_ROOT, 'bin', 'embedpool.js');

export type RedisMode = 'aof' | 'volatile' | 'cluster';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the soak needs of its Redis, one server or a cluster: the fleet's settings, an admin URL, a crash. */
export interface SoakStore {
  /** REDIS_URL (and REDIS_CLUSTER) for the fleet and the soak's own BullMQ clients. */
  readonly settings: RedisSettings;
  /** A plain client's URL to the node holding every key under the soak's (hash-tagged) prefix. */
  readonly adminUrl: string;
  readonly description: string;
  readonly crashLabel: string;
  /** kill -9 the server holding the prefix's keys, and restart it from its files. */
  crash(): Promise<void>;
  kill(): Promise<void>;
}

/** A private redis-server for the soak: append-only (fsync always, so an acknowledged write survives SIGKILL) or volatile. */
export class SoakRedis implements SoakStore {
  private readonly server: PrivateRedis;
  constructor(
    readonly port: number,
    readonly mode: RedisMode,
    dir: string,
  ) {
    // The testkit's server, with the soak's data directory and persistence (later arguments win).
    const persistence = mode === 'aof' ? ['--appendonly', 'yes', '--appendfsync', 'always'] : [];
    this.server = new PrivateRedis(port, ['--dir', dir, ...persistence]);
  }

  get url(): string {
    return this.server.url;
  }

  get settings(): RedisSettings {
    return { REDIS_URL: this.url };
  }

  get adminUrl(): string {
    return this.url;
  }

  get description(): string {
    return `redis ${this.mode} on ${this.port}`;
  }

  readonly crashLabel = 'redis SIGKILL + restart';

  async crash(): Promise<void> {
    await this.kill();
    await sleep(2_000);
    await this.start();
  }

  start(): Promise<void> {
    return this.server.start();
  }

  kill(): Promise<void> {
    return this.server.kill();
  }
}

/**
 * The soak's Redis Cluster: 3 masters on loopback (PrivateRedisCluster: AOF with fsync always on each node,
 * no replicas). Every key of the service sits in the one slot of the QUEUE_PREFIX hash tag, so the node
 * owning that slot is the one to crash, and the one the audit reads with a plain client.
 */
export class SoakRedisCluster implements SoakStore {
  private constructor(
    private readonly cluster: PrivateRedisCluster,
    private readonly owner: PrivateRedis,
  ) {}

  static async start(prefix: string): Promise<SoakRedisCluster> {
    const cluster = await PrivateRedisCluster.start(3);
    try {
      return new SoakRedisCluster(cluster, await cluster.nodeFor(`${prefix}:backlog`));
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  get settings(): RedisSettings {
    return { REDIS_URL: this.cluster.url, REDIS_CLUSTER: true };
  }

  get adminUrl(): string {
    return this.owner.url;
  }

  get description(): string {
    return `redis cluster of 3 masters on ${this.cluster.nodes.map((n) => n.port).join(',')} (AOF; prefix slot on ${this.owner.port})`;
  }

  readonly crashLabel = 'redis slot owner SIGKILL + restart';

  async crash(): Promise<void> {
    await this.owner.kill();
    await sleep(2_000);
    await this.owner.start();
    await this.cluster.waitHealthy(30_000);
  }

  async kill(): Promise<void> {
    await this.cluster.stop();
  }
}

/** One `embedpool api|worker` child with its JSON log in a file and the lines of interest kept in memory. */
export class FleetProcess {
  child: ChildProcess | undefined;
  private log: WriteStream;
  readonly interesting: { at: number; level: number; msg: string; err?: unknown }[] = [];
  private readyResolve: (() => void) | undefined;
  starts = 0;

  constructor(
    readonly name: string,
    readonly role: 'api' | 'worker',
    readonly env: Record<string, string>,
    logDir: string,
  ) {
    this.log = createWriteStream(join(logDir, `${name}.log`), { flags: 'a' });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get alive(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    this.starts++;
    // As the images run them: the shipped V8 flags (`embedpool` itself carries them in its shebang).
    const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, CLI, this.role], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const ready = new Promise<void>((resolve) => {
      this.readyResolve = resolve;
    });
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      this.log.write(d);
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        try {
          const l = JSON.parse(line) as { level: number; msg: string; err?: unknown };
          if (l.msg === 'worker started' || l.msg === 'API listening' || /API listening/.test(l.msg))
            this.readyResolve?.();
          if (l.level >= 40)
            this.interesting.push({ at: Date.now(), level: l.level, msg: l.msg, err: l.err });
        } catch {
          // not a log line
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => this.log.write(d));
    const exited = once(child, 'exit').then(() => {
      throw new Error(`${this.name} exited before it was ready`);
    });
    await Promise.race([ready, exited]);
    exited.catch(() => {});
  }

  signal(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.alive) return;
    const exited = once(child, 'exit');
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
  }

  close(): void {
    this.log.end();
  }
}

/** Resident set size of a process in bytes (Linux /proc), or undefined when it is gone. */
export function rssOf(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export { freePort };
