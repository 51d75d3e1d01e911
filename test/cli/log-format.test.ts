/**
 * Log lines for people and machines: the real CLI under a pseudo-terminal (util-linux `script`) writes
 * pretty single lines; in a pipe, or with LOG_FORMAT=json, one JSON object per line.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createRedis } from '@embedpool/core/queue';
import { REPO_ROOT } from '@embedpool/testkit';
import { afterAll, describe, expect, it } from 'vitest';

const ENTRY = join(REPO_ROOT, 'bin/embedpool.js');
// The API alone, on an ephemeral loopback port, under a queue prefix of its own.
const ENV = {
  PATH: process.env.PATH ?? '',
  HOME: '/tmp',
  TERM: 'xterm',
  HOST: '127.0.0.1',
  PORT: '0',
  REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
  QUEUE_PREFIX: `t-logfmt-${process.pid}`,
  LOG_LEVEL: 'info',
};

/** Runs `embedpool api` until it logs that it listens, then stops it; resolves with everything it wrote. */
function apiOutput(env: Record<string, string>, tty: boolean): Promise<string> {
  const node = process.execPath;
  const [cmd, args] = tty
    ? ['script', ['-qfec', `'${node}' '${ENTRY}' api`, '/dev/null']]
    : [node, [ENTRY, 'api']];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd as string, args as string[], {
      cwd: REPO_ROOT,
      env: { ...ENV, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    const timer = setTimeout(() => {
      process.kill(-child.pid!, 'SIGKILL');
      reject(new Error(`no "listening" line within 60 s:\n${out}`));
    }, 60_000);
    const onData = (b: Buffer) => {
      out += b.toString('utf8');
      if (/embedpool API listening/.test(out)) process.kill(-child.pid!, 'SIGTERM');
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping the terminal's colour codes
const plain = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '').replace(/\r/g, '');

describe('log format', () => {
  afterAll(async () => {
    // The API declares its queues (meta keys) under the prefix: remove what this test made.
    const redis = createRedis(ENV.REDIS_URL, 'consumer');
    const found = await redis.keys(`${ENV.QUEUE_PREFIX}:*`);
    if (found.length > 0) await redis.del(...found);
    redis.disconnect();
  });

  it('is one readable line per entry on a terminal, not JSON', async () => {
    const out = plain(await apiOutput({}, true));
    const lines = out.split('\n').filter((l) => l.trim() !== '');
    const listening = lines.find((l) => l.includes('embedpool API listening'));
    expect(listening, out).toMatch(
      /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(api\): embedpool API listening \{"url":"http:\/\/127\.0\.0\.1:\d+"\}$/,
    );
    expect(
      lines.filter((l) => l.trimStart().startsWith('{')),
      out,
    ).toEqual([]);
    // Every line is an entry of its own: nothing is continued on an indented line.
    expect(
      lines.filter((l) => /^\s/.test(l)),
      out,
    ).toEqual([]);
  });

  it('is JSON on a terminal when LOG_FORMAT=json, and JSON in a pipe', async () => {
    for (const out of [await apiOutput({ LOG_FORMAT: 'json' }, true), await apiOutput({}, false)]) {
      const lines = plain(out)
        .split('\n')
        // What `script` itself says when it is stopped.
        .filter((l) => l.trim() !== '' && !l.startsWith('Session terminated'));
      const entries = lines.map((l) => JSON.parse(l) as { msg: string; service: string });
      expect(entries.some((e) => e.service === 'api' && e.msg === 'embedpool API listening')).toBe(true);
    }
  });
});
