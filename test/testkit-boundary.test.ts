import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT } from '@embedpool/testkit';
import { describe, expect, it } from 'vitest';

/** Production source: what the images compile. Tests (`*.test.ts`) beside it may use the testkit. */
const PRODUCTION_ROOTS = ['packages/core/src', 'apps/api/src', 'apps/worker/src', 'apps/cli/src', 'bin'];

function sources(dir: string): string[] {
  return readdirSync(join(REPO_ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(ts|js|mjs)$/.test(e.name) && !e.name.endsWith('.test.ts'))
    .map((e) => relative(REPO_ROOT, join(e.parentPath, e.name)))
    .filter((p) => !p.includes('node_modules') && !p.includes('/.types'));
}

const readJson = (path: string) => JSON.parse(readFileSync(join(REPO_ROOT, path), 'utf8'));

describe('test kits live in packages/testkit, out of production code and images', () => {
  it('no production source imports the testkit or holds a kit', () => {
    const files = PRODUCTION_ROOTS.flatMap(sources);
    expect(files.length).toBeGreaterThan(50);
    const offenders = files.filter((f) =>
      /from\s+['"]@embedpool\/testkit|import\(\s*['"]@embedpool\/testkit|packages\/testkit/.test(
        readFileSync(join(REPO_ROOT, f), 'utf8'),
      ),
    );
    expect(offenders).toEqual([]);
    const kits = files.filter((f) =>
      /(^|\/)testing\/|test-kit|azurite-kit|fixture-server|test-helpers/.test(f),
    );
    expect(kits).toEqual([]);
  });

  it('core exports no ./testing, and the testkit is private and a root devDependency only', () => {
    const core = readJson('packages/core/package.json');
    expect(Object.keys(core.exports)).not.toContain('./testing');
    expect(existsSync(join(REPO_ROOT, 'packages/core/src/testing'))).toBe(false);
    expect(readJson('packages/testkit/package.json')).toMatchObject({
      name: '@embedpool/testkit',
      private: true,
    });
    const root = readJson('package.json');
    expect(root.devDependencies['@embedpool/testkit']).toBeDefined();
    for (const ws of root.workspaces as string[]) {
      expect(Object.keys(readJson(`${ws}/package.json`).dependencies ?? {}), ws).not.toContain(
        '@embedpool/testkit',
      );
    }
    expect(Object.keys(root.dependencies)).not.toContain('@embedpool/testkit');
  });

  it("production TypeScript projects neither include tests nor reference the testkit; images' context leaves it out", () => {
    for (const dir of ['packages/core', 'apps/api', 'apps/worker', 'apps/cli']) {
      const ts = readJson(`${dir}/tsconfig.json`);
      expect(ts.exclude, dir).toContain('src/**/*.test.ts');
      expect(JSON.stringify(ts.references), dir).not.toContain('testkit');
    }
    const ignore = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n');
    expect(ignore).toContain('packages/testkit/*');
    expect(ignore).toContain('!packages/testkit/package.json');
  });
});
