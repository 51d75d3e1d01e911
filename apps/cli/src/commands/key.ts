import { EmbedpoolError } from '@embedpool/core/errors';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { runAction } from './cli-support';

const NAME = /^[A-Za-z0-9._-]{1,64}$/;

function keyName(value: string): string {
  if (!NAME.test(value)) throw new InvalidArgumentError('must be 1-64 of [A-Za-z0-9._-].');
  return value;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  // One trailing newline (echo, a here-string) is not part of the key.
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

export const KEY_FORMATS = ['text', 'env', 'json'] as const;
export type KeyFormat = (typeof KEY_FORMATS)[number];

/**
 * What `key new` prints. `env` is two shell-safe assignments a script can `eval` or append to a `.env` file:
 * `EMBEDPOOL_API_KEY=<key>` (for the client) and `API_KEYS=<name>:<sha256>` (for the server; several
 * entries join with commas). `json` is `{"name","key","apiKeysEntry"}`. Keys and hashes are base64url and
 * hex, so no quoting is needed.
 */
export function formatNewKey(format: KeyFormat, name: string, key: string, entry: string): string {
  switch (format) {
    case 'env':
      return `EMBEDPOOL_API_KEY=${key}\nAPI_KEYS=${entry}\n`;
    case 'json':
      return `${JSON.stringify({ name, key, apiKeysEntry: entry })}\n`;
    case 'text':
      return `key: ${key}\nAPI_KEYS entry: ${entry}\n`;
  }
}

/** `embedpool key new|hash`: API keys for API_KEYS (only their SHA-256 is ever configured). */
export function registerKeyCommands(program: Command): void {
  const key = program.command('key').description('API keys for API_KEYS (docs/hardening.md)');
  key
    .command('new')
    .description('make a random API key; prints the key (once) and its API_KEYS entry')
    .option('--name <name>', 'the key owner name in API_KEYS', keyName, 'default')
    .addOption(
      new Option('--format <format>', 'text for people; env or json for scripts (see formatNewKey)')
        .choices([...KEY_FORMATS])
        .default('text'),
    )
    .action(
      runAction(async (opts: { name: string; format: KeyFormat }) => {
        const { hashKey, newKey } = await import('@embedpool/api');
        const k = newKey();
        process.stdout.write(formatNewKey(opts.format, opts.name, k, `${opts.name}:${hashKey(k)}`));
        process.stderr.write('Give the key to its client now: it is not stored anywhere.\n');
        return 0;
      }),
    );
  key
    .command('hash')
    .description('read a key on stdin and print its API_KEYS entry (same as: printf %s "$KEY" | sha256sum)')
    .option('--name <name>', 'the key owner name in API_KEYS', keyName, 'default')
    .action(
      runAction(async (opts: { name: string }) => {
        const { hashKey } = await import('@embedpool/api');
        const k = await readStdin();
        if (!k) throw new EmbedpoolError('BAD_REQUEST', 'no key on stdin');
        process.stdout.write(`${opts.name}:${hashKey(k)}\n`);
        return 0;
      }),
    );
}
