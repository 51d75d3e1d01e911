import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '@embedpool/testkit';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const ENTRY = join(REPO_ROOT, 'bin/embedpool.js');

/**
 * Runs the real CLI in a child process, as a user would. Hub settings from the developer's shell are
 * dropped and HF_ENDPOINT points at a closed loopback port, so no test can reach the network by accident.
 */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 110_000,
): Promise<CliResult> {
  return runNode([ENTRY, ...args], env, timeoutMs);
}

/** A process's own entry point (`apps/api/src/main.ts`), run through tsx as a checkout runs it. */
export function runEntry(
  entry: string,
  env: Record<string, string> = {},
  timeoutMs = 110_000,
  args: string[] = [],
): Promise<CliResult> {
  return runNode(['--import', 'tsx', join(REPO_ROOT, entry), ...args], env, timeoutMs);
}

function runNode(nodeArgs: string[], env: Record<string, string>, timeoutMs: number): Promise<CliResult> {
  // ORT_DISABLE_TELEMETRY too: the CLI must set it itself (see the long command line test).
  const {
    HF_ENDPOINT: _e,
    HF_TOKEN: _t,
    EMBEDPOOL_CACHE_DIR: _c,
    ORT_DISABLE_TELEMETRY: _o,
    ...inherited
  } = process.env;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, nodeArgs, {
      cwd: REPO_ROOT,
      env: { ...inherited, HF_ENDPOINT: 'http://127.0.0.1:9', LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({
        code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** Parses JSON-lines output, one object per line. */
export function jsonLines<T>(text: string): T[] {
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as T);
}
