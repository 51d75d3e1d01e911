import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '@embedpool/testkit';

const REPO_ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(REPO_ROOT, 'bin', 'embedpool.js');

export type RedisMode = 'aof' | 'volatile';

/** A private redis-server for the soak: append-only (fsync always, so an acknowledged write survives SIGKILL) or volatile. */
export class SoakRedis {
  private child: ChildProcess | undefined;
  constructor(
    readonly port: number,
    readonly mode: RedisMode,
    private readonly dir: string,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const persistence =
      this.mode === 'aof'
        ? ['--appendonly', 'yes', '--appendfsync', 'always', '--save', '']
        : ['--appendonly', 'no', '--save', ''];
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, ...persistence],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    let log = '';
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        log += chunk.toString();
        if (log.includes('Ready to accept connections')) {
          child.stdout?.off('data', onData);
          child.stdout?.resume();
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.once('exit', (code) => reject(new Error(`redis-server exited (${code}) before ready:\n${log}`)));
    });
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
    this.child = undefined;
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
    const child = spawn(process.execPath, [CLI, this.role], {
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
