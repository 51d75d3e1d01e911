#!/usr/bin/env node
/**
 * `npm run build`: type-checks (tsc -b) and compiles the CLI and the services to plain JavaScript in dist/,
 * which the container images run (no TypeScript compiler or loader at run time):
 *
 *   dist/cli.mjs                     every command (`node dist/cli.mjs ...`, the worker images)
 *   dist/serve.mjs                   serve / api / worker only (the API image: no onnxruntime, no sharp)
 *   dist/inference-thread-entry.mjs  the engine's worker-thread body, found beside the chunk that loads it
 *
 * Our workspaces (@embedpool/*) are bundled; every npm package stays an import resolved from node_modules.
 * A checkout keeps running the TypeScript directly (bin/embedpool.js, tsx), so `npm start` needs no build.
 *
 *   node scripts/build.mjs [--outdir dist] [--no-typecheck]
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Bare imports of npm packages stay imports; relative paths and our workspaces are bundled. */
const externalPackages = {
  name: 'external-packages',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith('@embedpool/') || args.path.startsWith('node:')) return undefined;
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
  return build({
    absWorkingDir: ROOT,
    entryPoints: [
      { in: 'bin/cli.ts', out: 'cli' },
      { in: 'bin/serve-main.ts', out: 'serve' },
      { in: 'packages/core/src/engine/inference-thread.ts', out: 'inference-thread-entry' },
    ],
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    outExtension: { '.js': '.mjs' },
    // Flat: code that finds files beside itself (the thread entry) works from any chunk.
    chunkNames: 'chunk-[hash]',
    sourcemap: true,
    metafile: true,
    logLevel: 'warning',
    plugins: [externalPackages],
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--outdir');
  await buildDist({
    ...(at >= 0 ? { outdir: resolve(args[at + 1]) } : {}),
    typecheck: !args.includes('--no-typecheck'),
  });
}
