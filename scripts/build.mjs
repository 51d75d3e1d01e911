#!/usr/bin/env node
/**
 * `npm run build`: type-checks (tsc -b) and compiles each process's entry point and the CLI to plain
 * JavaScript in dist/, which the container images run (no TypeScript compiler or loader at run time):
 *
 *   dist/api.mjs                     the API process, apps/api/src/main.ts (API image; no onnxruntime, sharp)
 *   dist/worker.mjs                  the worker process, apps/worker/src/main.ts (the worker images)
 *   dist/cli.mjs                     every command, apps/cli (the worker images' `model fetch`)
 *   dist/inference-thread-entry.mjs  the engine's worker-thread body, found beside the chunk that loads it
 *   dist/lua/*.lua                   the Redis Lua scripts, read at module load (packages/core/src/lua)
 *
 * Our workspaces (@embedpool/*) are bundled; npm packages stay imports resolved from node_modules, except a
 * version a workspace keeps nested for itself (see externalPackages).
 * A checkout keeps running the TypeScript directly (bin/embedpool.js, tsx), so `npm start` needs no build.
 *
 *   node scripts/build.mjs [--outdir dist] [--no-typecheck]
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The package name of a bare import (`@scope/name/sub` -> `@scope/name`). */
const packageName = (spec) =>
  spec
    .split('/')
    .slice(0, spec.startsWith('@') ? 2 : 1)
    .join('/');

/** Where a package's package.json resolves from a folder (undefined when it does not). */
function packageDir(name, from) {
  try {
    return dirname(createRequire(join(from, 'noop.js')).resolve(`${name}/package.json`));
  } catch {
    // Packages whose exports map hides package.json: find the folder by walking up node_modules.
    for (let dir = from; ; dir = dirname(dir)) {
      const candidate = join(dir, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) return candidate;
      if (dirname(dir) === dir) return undefined;
    }
  }
}

/**
 * Bare imports of npm packages stay imports, resolved at run time from the image's node_modules, except
 * where a workspace uses a version of its own (npm nests it under that workspace, e.g. a newer
 * @opentelemetry/resources than one a dev tool hoists): code moved into dist/ would no longer see that
 * nested copy, so it is bundled. Relative paths and our workspaces are bundled.
 */
const externalPackages = {
  name: 'external-packages',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith('@embedpool/') || args.path.startsWith('node:')) return undefined;
      const name = packageName(args.path);
      const own = args.resolveDir ? packageDir(name, args.resolveDir) : undefined;
      if (own && own !== packageDir(name, ROOT)) return undefined;
      return { path: args.path, external: true };
    });
  },
};

export async function buildDist({ outdir = join(ROOT, 'dist'), typecheck = true } = {}) {
  if (typecheck)
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-b'], {
      cwd: ROOT,
      stdio: 'inherit',
    });
  rmSync(outdir, { recursive: true, force: true });
  copyLuaScripts(join(outdir, 'lua'));
  return build({
    absWorkingDir: ROOT,
    entryPoints: [
      { in: 'apps/api/src/main.ts', out: 'api' },
      { in: 'apps/worker/src/main.ts', out: 'worker' },
      { in: 'apps/cli/src/cli.ts', out: 'cli' },
      { in: 'packages/core/src/engine/inference-thread.ts', out: 'inference-thread-entry' },
    ],
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    outExtension: { '.js': '.mjs' },
    // A bundled CommonJS package (see externalPackages) requires its own dependencies: give ESM a require.
    banner: {
      js: "import { createRequire as __embedpoolRequire } from 'node:module'; const require = __embedpoolRequire(import.meta.url);",
    },
    // Flat: code that finds files beside itself (the thread entry) works from any chunk.
    chunkNames: 'chunk-[hash]',
    sourcemap: true,
    metafile: true,
    logLevel: 'warning',
    plugins: [externalPackages],
  });
}

/**
 * Every `lua/*.lua` under a workspace's src/ goes to one flat folder: the bundle's chunks all sit in dist/,
 * so a module's `new URL('./lua/<name>.lua', import.meta.url)` finds it there. Names must be unique.
 */
function copyLuaScripts(to) {
  mkdirSync(to, { recursive: true });
  const seen = new Map();
  for (const root of ['packages', 'apps']) {
    for (const e of readdirSync(join(ROOT, root), { withFileTypes: true, recursive: true })) {
      const from = join(e.parentPath, e.name);
      if (!e.isFile() || !e.name.endsWith('.lua') || !from.includes('/src/') || from.includes('node_modules'))
        continue;
      if (!from.endsWith(join('lua', e.name))) throw new Error(`${from}: Lua scripts live in a lua/ folder`);
      if (seen.has(e.name))
        throw new Error(`two Lua scripts named ${e.name}: ${seen.get(e.name)} and ${from}`);
      seen.set(e.name, from);
      copyFileSync(from, join(to, e.name));
    }
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--outdir');
  await buildDist({
    ...(at >= 0 ? { outdir: resolve(args[at + 1]) } : {}),
    typecheck: !args.includes('--no-typecheck'),
  });
}
