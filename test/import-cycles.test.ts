import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '@embedpool/testkit';
import { parseCircular, parseDependencyTree } from 'dpdm';
import { describe, expect, it } from 'vitest';

/**
 * Import cycles in production code (packages, apps, the CLI), found by dpdm. `transform: true` compiles
 * TypeScript first, so type-only imports (erased at run time) may point either way; a value import may not.
 */
async function cycles(context: string, entries: string[]): Promise<string[][]> {
  const tree = await parseDependencyTree(entries, {
    context,
    cwd: context,
    transform: true,
    exclude: /node_modules|\.types|\.test\.ts$/,
    extensions: ['.ts', '.mjs', '.js', '.json'],
  });
  return parseCircular(tree);
}

describe('import cycles', () => {
  it('production code has none (type-only imports excepted)', async () => {
    const found = await cycles(REPO_ROOT, ['packages/*/src/**/*.ts', 'apps/*/src/**/*.ts', 'bin/*.js']);
    expect(found.map((c) => c.join(' -> '))).toEqual([]);
  });

  it('the check finds a value cycle and lets a type-only one pass', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cycles-'));
    try {
      await writeFile(join(dir, 'a.ts'), "import { b } from './b';\nexport const a = () => b();\n");
      await writeFile(join(dir, 'b.ts'), "import { a } from './a';\nexport const b = () => a();\n");
      await writeFile(join(dir, 'c.ts'), "import type { D } from './d';\nexport const c = (d: D) => d;\n");
      await writeFile(
        join(dir, 'd.ts'),
        "import { c } from './c';\nexport type D = number;\nexport const d = c;\n",
      );
      const found = await cycles(dir, ['*.ts']);
      expect(found.map((c) => [...c].sort())).toEqual([['a.ts', 'b.ts']]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
