#!/usr/bin/env node
/**
 * The npm packages one workspace needs at run time, read from package-lock.json: its `dependencies`, then
 * theirs (optional ones included), resolved the way Node does (nested node_modules first, then upwards),
 * workspace links followed; devDependencies never. The container images keep exactly this set (see
 * `prune`), and test/infra/api-image.test.ts checks it (the API's holds no onnxruntime, sharp or TypeScript).
 *
 *   node scripts/deps-closure.mjs apps/api            # list, one lockfile path per line
 *   node scripts/deps-closure.mjs apps/api --prune    # delete every other top-level package in node_modules
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Lockfile paths (`node_modules/x`, `node_modules/x/node_modules/y`) the workspace needs, sorted. */
export function runtimeClosure(
  folder,
  lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')),
) {
  const packages = lock.packages;
  // `.` is the root package (the CLI), which the lockfile keys as "".
  const workspace = folder === '.' ? '' : folder;
  if (packages[workspace] === undefined)
    throw new Error(`${workspace} is not a workspace in package-lock.json`);
  const out = new Set();
  const resolveFrom = (from, name) => {
    // From `node_modules/a/node_modules/b` look in its own node_modules, then each parent's, then the root's.
    let base = from;
    for (;;) {
      const candidate = base ? `${base}/node_modules/${name}` : `node_modules/${name}`;
      if (packages[candidate]) return candidate;
      if (!base) return undefined;
      const i = base.lastIndexOf('/node_modules/');
      base = i >= 0 ? base.slice(0, i) : '';
    }
  };
  const visit = (path) => {
    const entry = packages[path];
    const deps = { ...(entry.dependencies ?? {}), ...(entry.optionalDependencies ?? {}) };
    for (const name of Object.keys(deps)) {
      const found = resolveFrom(path.startsWith('node_modules/') ? path : '', name);
      if (!found) {
        if (entry.optionalDependencies?.[name]) continue; // another platform's optional package
        throw new Error(`${path} needs ${name}, which package-lock.json does not have`);
      }
      if (out.has(found)) continue;
      out.add(found);
      const target = packages[found];
      // A workspace link: its dependencies are those of the workspace folder it points at.
      visit(target.link ? target.resolved : found);
    }
  };
  visit(workspace);
  return [...out].sort();
}

/** Removes from node_modules every top-level package (and scope member) the closure does not name. */
export function prune(workspace, nodeModules = join(ROOT, 'node_modules')) {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
  const keep = new Set(
    runtimeClosure(workspace, lock)
      // Our own workspaces are compiled into dist/: their links (to source folders the image lacks) go too.
      .filter((p) => !lock.packages[p].link)
      .map((p) => p.split('/node_modules/')[0])
      .map((p) => p.slice('node_modules/'.length)),
  );
  const removed = [];
  for (const name of readdirSync(nodeModules)) {
    if (name.startsWith('.')) continue;
    const names = name.startsWith('@')
      ? readdirSync(join(nodeModules, name)).map((n) => `${name}/${n}`)
      : [name];
    for (const n of names) {
      if (keep.has(n)) continue;
      rmSync(join(nodeModules, n), { recursive: true, force: true });
      removed.push(n);
    }
  }
  return removed;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [workspace, flag] = process.argv.slice(2);
  if (!workspace) {
    process.stderr.write('usage: node scripts/deps-closure.mjs <workspace folder> [--prune]\n');
    process.exit(2);
  }
  if (flag === '--prune') process.stdout.write(`removed ${prune(workspace).length} packages\n`);
  else process.stdout.write(`${runtimeClosure(workspace).join('\n')}\n`);
}
