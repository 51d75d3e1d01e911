import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Whether the module at `moduleUrl` is the script node was started with (`node dist/worker.mjs`,
 * `node --import tsx apps/worker/src/main.ts`), so a main module runs itself only then and stays a plain
 * import for the CLI. The bundle keeps this true: an entry point another entry imports stays its own file.
 */
export function isProcessEntry(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(resolve(script)) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    // The script or the module is not a file on disk (a REPL, `node -e`): not an entry.
    return false;
  }
}

/**
 * A process entry point takes its settings from the environment only. An argument is a mistake worth a
 * sentence, not silence: `docker run <worker image> model fetch` would otherwise start a worker.
 */
export function refuseArguments(kind: 'api' | 'worker', args: readonly string[]): void {
  if (args.length === 0) return;
  console.error(
    `embedpool ${kind}: this entry point takes no arguments (got "${args.join(' ')}"); settings are ` +
      'environment variables, and commands such as `model fetch` belong to the CLI (node dist/cli.mjs)',
  );
  process.exit(1);
}
