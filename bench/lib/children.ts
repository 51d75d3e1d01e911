import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Each heavy section runs in a child process of its own: its RSS, threads and event loop are its own, and
 * whatever one section leaves behind (ORT arenas, libvips caches, worker threads) cannot skew the next.
 * Parent and child talk over the IPC channel: `{id, cmd, arg}` requests, `{id, ok, value | error}` replies.
 */
export type ChildKind = 'raw' | 'preprocess' | 'micro' | 'server' | 'coldstart' | 'decode';

export interface ChildRequest {
  id: number;
  cmd: string;
  arg: unknown;
}

export type ChildReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

const ENTRY = fileURLToPath(new URL('../child.ts', import.meta.url));

const live = new Set<ChildHandle>();

/** Kills every child still running (the bench was interrupted). */
export function killAllChildren(): void {
  for (const c of live) c.kill();
}

export class ChildHandle {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited = false;
  readonly exit: Promise<number | null>;

  private constructor(readonly proc: ChildProcess) {
    proc.on('message', (msg: ChildReply) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.value);
      else p.reject(new Error(msg.error));
    });
    live.add(this);
    this.exit = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exited = true;
        live.delete(this);
        for (const p of this.pending.values()) {
          p.reject(new Error(`bench child exited (code ${code}, signal ${signal}) before answering`));
        }
        this.pending.clear();
        resolve(code);
      });
    });
  }

  static start(kind: ChildKind, env: NodeJS.ProcessEnv = {}): ChildHandle {
    // A/B variants of onnxruntime options the Engine does not expose go through a preload (bench-only).
    const patch =
      env.EMBEDPOOL_BENCH_ORT_CONFIG !== undefined || env.EMBEDPOOL_BENCH_ORT_CPU_ARENA !== undefined
        ? ['--import', new URL('./ort-session-patch.mjs', import.meta.url).href]
        : [];
    const proc = fork(ENTRY, [kind], {
      // The child is TypeScript too; tsx is resolved here so the child's working directory does not matter.
      execArgv: ['--import', import.meta.resolve('tsx'), ...patch],
      env: { ...process.env, ORT_DISABLE_TELEMETRY: '1', ...env },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    return new ChildHandle(proc);
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  call<T>(cmd: string, arg: unknown = null): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`bench child is gone (cmd ${cmd})`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.proc.send({ id, cmd, arg } satisfies ChildRequest);
    });
  }

  /** Asks the child to exit; kills it if it has not within `graceMs`. */
  async close(graceMs = 30_000): Promise<void> {
    if (this.exited) return;
    this.proc.send({ id: 0, cmd: 'exit', arg: null } satisfies ChildRequest);
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await this.exit;
    clearTimeout(timer);
  }

  kill(): void {
    if (!this.exited) this.proc.kill('SIGKILL');
  }
}

/** One request, one answer, then the child exits. */
export async function runInChild<T>(kind: ChildKind, arg: unknown, env: NodeJS.ProcessEnv = {}): Promise<T> {
  const child = ChildHandle.start(kind, env);
  try {
    return await child.call<T>('run', arg);
  } finally {
    await child.close();
  }
}

/** Child side: answers requests with the handlers given until asked to exit. */
export function serveRequests(handlers: Record<string, (arg: never) => Promise<unknown>>): void {
  const send = (reply: ChildReply) => process.send?.(reply);
  process.on('message', (msg: ChildRequest) => {
    if (msg.cmd === 'exit') {
      process.removeAllListeners('disconnect');
      process.disconnect?.();
      // Worker threads and sockets would keep the process alive; the section is over.
      setImmediate(() => process.exit(0));
      return;
    }
    const handler = handlers[msg.cmd];
    if (!handler) {
      send({ id: msg.id, ok: false, error: `unknown command ${msg.cmd}` });
      return;
    }
    handler(msg.arg as never).then(
      (value) => send({ id: msg.id, ok: true, value }),
      (err: unknown) =>
        send({
          id: msg.id,
          ok: false,
          error: err instanceof Error ? `${err.message}\n${err.stack ?? ''}` : String(err),
        }),
    );
  });
  // The parent is gone (Ctrl-C, crash): nothing left to answer. SIGKILL, because process.exit waits for an
  // inference thread to come back from a run that may take a minute.
  process.on('disconnect', () => process.kill(process.pid, 'SIGKILL'));
}
