import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { REPO_ROOT } from '@embedpool/testkit';

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

// Children must not outlive the test process, even when a test times out before its cleanup runs.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

/**
 * The real `embedpool` CLI as a child process, with its pino JSON log parsed line by line; or, with
 * `entry`, a process's own entry point (`apps/worker/src/main.ts`, run through tsx as a checkout runs it).
 */
export class CliProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  private readonly waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  stderr = '';

  constructor(args: string[], env: Record<string, string>, entry?: string) {
    const script = entry
      ? ['--import', 'tsx', join(REPO_ROOT, entry)]
      : [join(REPO_ROOT, 'bin/embedpool.js')];
    this.child = spawn(process.execPath, [...script, ...args], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(this.child);
    this.child.once('exit', () => running.delete(this.child));
    let buf = '';
    this.child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        try {
          this.push(JSON.parse(text) as LogLine);
        } catch {
          // not a log line
        }
      }
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
  }

  private push(line: LogLine): void {
    this.lines.push(line);
    for (const w of [...this.waiters]) {
      if (w.match(line)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  }

  /** Resolves with the first log line (past or future) that matches; rejects if the process exits first. */
  waitForLog(match: (l: LogLine) => boolean): Promise<LogLine> {
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      this.waiters.push({ match, resolve });
      this.child.once('exit', (code) =>
        reject(
          new Error(`process exited (${code}) before the log line; stderr: ${this.stderr.slice(-2000)}`),
        ),
      );
    });
  }

  async kill(signal: NodeJS.Signals): Promise<number | null> {
    // A process ended by a signal has exitCode null and signalCode set.
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    const exited = once(this.child, 'exit') as Promise<[number | null, string | null]>;
    this.child.kill(signal);
    const [code] = await exited;
    return code;
  }
}
