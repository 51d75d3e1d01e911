import { readFileSync } from 'node:fs';

/**
 * Reads a Redis Lua script kept in a `lua/` folder beside the module that runs it, once, at module load.
 * `base` is that module's `import.meta.url`: from the TypeScript sources it is the module's own folder;
 * in the compiled bundle every chunk sits in dist/ and scripts/build.mjs copies each script to dist/lua/
 * (script names are unique across the repository for that reason).
 */
export function loadLua(name: string, base: string): string {
  return readFileSync(new URL(`./lua/${name}.lua`, base), 'utf8');
}

/** lua/hset-if-exists.lua: KEYS[1] hash; ARGV field, value. */
export const HSET_IF_EXISTS = loadLua('hset-if-exists', import.meta.url);
