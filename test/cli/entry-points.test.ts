/**
 * Each process's own entry point (what its image runs, compiled) refuses a bad configuration as the CLI
 * does: exit 1 and one sentence naming the variable, no stack, nothing started; it takes no arguments; and
 * importing it (as the CLI does) starts nothing.
 */
import { describe, expect, it } from 'vitest';
import { runCli, runEntry } from './run-cli';

// Port 1 on loopback: nothing answers, and nothing may be reached before the config is refused.
const CLOSED_REDIS = { REDIS_URL: 'redis://127.0.0.1:1' };

describe('process entry points', { timeout: 120_000 }, () => {
  it.each([
    ['apps/api/src/main.ts', 'PORT'],
    ['apps/worker/src/main.ts', 'MAX_BATCH_SIZE'],
  ])('%s refuses an invalid %s in one sentence naming it, as `embedpool` does', async (entry, name) => {
    const env = { ...CLOSED_REDIS, [name]: 'abc' };
    const direct = await runEntry(entry, env);
    expect(direct.code, direct.stderr).toBe(1);
    expect(direct.stderr).toMatch(
      new RegExp(
        `^embedpool: invalid configuration: ${name}="abc" is not valid [^\\n]*Fix ${name}[^\\n]*\\n$`,
      ),
    );
    expect(direct.stdout).toBe('');
    const viaCli = await runCli([entry.includes('/api/') ? 'api' : 'worker'], env);
    expect(viaCli.code).toBe(1);
    expect(viaCli.stderr).toBe(direct.stderr);
  });

  it('the API entry refuses a non-loopback HOST without credentials before starting anything', async () => {
    const r = await runEntry('apps/api/src/main.ts', {
      ...CLOSED_REDIS,
      HOST: '192.0.2.1',
      LOG_LEVEL: 'info',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^embedpool api: refusing to start: HOST=192\.0\.2\.1 [^\n]*\n$/);
    expect(r.stdout).not.toMatch(/listening/);
  });

  it('an entry point refuses arguments instead of ignoring them (`model fetch` is the CLI)', async () => {
    const r = await runEntry('apps/worker/src/main.ts', CLOSED_REDIS, undefined, ['model', 'fetch']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^embedpool worker: this entry point takes no arguments \(got "model fetch"\)[^\n]*\n$/,
    );
    expect(r.stdout).toBe('');
  });

  it('importing an entry point (as the CLI does) runs nothing', async () => {
    const r = await runEntry('test/cli/import-entries.ts', CLOSED_REDIS);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('imported: main main\n');
  });
});
