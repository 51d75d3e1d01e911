import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { REPO_ROOT } from '@embedpool/testkit';
import { describe, expect, it } from 'vitest';

const sources = ['packages/core/src', 'apps/api/src', 'apps/worker/src'].flatMap((dir) =>
  readdirSync(join(REPO_ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
    .map((e) => join(e.parentPath, e.name)),
);

describe('Redis Lua scripts live in .lua files', () => {
  it('no production TypeScript holds Lua, and every loadLua names a script in lua/ beside it', () => {
    expect(sources.length).toBeGreaterThan(50);
    const inline = sources.filter((f) => readFileSync(f, 'utf8').includes('redis.call('));
    expect(inline.map((f) => relative(REPO_ROOT, f))).toEqual([]);
    const loads = sources.flatMap((f) =>
      [...readFileSync(f, 'utf8').matchAll(/loadLua\('([\w-]+)', import\.meta\.url\)/g)].map((m) => ({
        file: relative(REPO_ROOT, f),
        script: join(dirname(f), 'lua', `${m[1]}.lua`),
      })),
    );
    expect(loads.length).toBeGreaterThanOrEqual(15);
    for (const { file, script } of loads) expect(existsSync(script), `${file}: ${script}`).toBe(true);
    // The bundle copies every script into one dist/lua/ folder: a name may be used once.
    const names = loads.map((l) => l.script.split('/').pop());
    expect(new Set(names).size).toBe(new Set(loads.map((l) => l.script)).size);
  });
});
