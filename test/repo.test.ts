/**
 * The repository is self-contained and installs the same way for everyone: nothing refers to a path
 * outside it, every relative link in its Markdown lands on a file inside it, no dependency's install script
 * runs, and CI sets none of the project's variables (it behaves as a new user).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { envSchema } from '@embedpool/core/config';
import { SERVICE_NODE_FLAGS } from '@embedpool/core/process';
import { REPO_ROOT } from '@embedpool/testkit';
import { describe, expect, it } from 'vitest';

const tracked = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
  cwd: REPO_ROOT,
  encoding: 'utf8',
})
  .split('\0')
  .filter((f) => f && existsSync(join(REPO_ROOT, f)));

const TEXT =
  /\.(ts|js|mjs|cjs|json|md|ya?ml|tf|sh|toml|txt|env|example|Dockerfile)$|(^|\/)(Dockerfile|\.ci\/run|\.npmrc|cloud-init[^/]*)$/;
const textFiles = tracked.filter(
  (f) => TEXT.test(f) && !f.startsWith('test/fixtures/') && f !== 'package-lock.json',
);
const read = (f: string) => readFileSync(join(REPO_ROOT, f), 'utf8');

describe('the repository is self-contained', () => {
  it('has text files to check (the listing works)', () => {
    expect(textFiles).toContain('README.md');
    expect(textFiles).toContain('.ci/run');
    expect(textFiles.length).toBeGreaterThan(100);
  });

  // The pattern is assembled so that this file does not name the folder itself and needs no exception.
  const besideCheckout = new RegExp(`\\.\\./${'sha'}red\\b`);

  it('no file refers to the shared folder beside the checkout', () => {
    expect(besideCheckout.test(['..', 'shared', 'x'].join('/'))).toBe(true);
    const offenders = textFiles.filter((f) => besideCheckout.test(read(f)));
    expect(offenders).toEqual([]);
  });

  it('every relative Markdown link points at a file inside the repository', () => {
    const broken: string[] = [];
    for (const f of textFiles.filter((x) => x.endsWith('.md'))) {
      for (const m of read(f).matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!.split('#')[0]!;
        if (!target || /^[a-z]+:/i.test(target)) continue;
        const abs = resolve(REPO_ROOT, dirname(f), target);
        const rel = relative(REPO_ROOT, abs);
        if (rel.startsWith('..') || !existsSync(abs)) broken.push(`${f}: ${m[1]}`);
      }
    }
    expect(broken).toEqual([]);
  });
});

describe('install', () => {
  it('runs no dependency install script (.npmrc ignore-scripts)', () => {
    expect(read('.npmrc')).toMatch(/^ignore-scripts=true$/m);
  });

  it('knows every dependency that has an install script, and each works without it', () => {
    const lock = JSON.parse(read('package-lock.json')) as {
      packages: Record<string, { hasInstallScript?: boolean }>;
    };
    const withScripts = Object.entries(lock.packages)
      .filter(([, p]) => p.hasInstallScript)
      .map(([k]) => k.replace(/^.*node_modules\//, ''))
      .sort();
    // onnxruntime-node: downloads the CUDA provider (the GPU image runs it explicitly); esbuild and
    // msgpackr-extract: binaries come as optional platform packages; protobufjs: a version notice.
    // A new entry here needs a look at what its script does before it is added.
    // @scarf/scarf (under swagger-ui-dist, which /docs serves): install-time usage reporting, which is exactly
    // what must not run; nothing needs it.
    const known = new Set(['@scarf/scarf', 'esbuild', 'msgpackr-extract', 'onnxruntime-node', 'protobufjs']);
    expect(withScripts.filter((p) => !known.has(p))).toEqual([]);
  });
});

describe('CI behaves as a new user', () => {
  const ci = read('.ci/run');

  it("runs the README's two commands and sets none of the project's variables", () => {
    expect(ci).toMatch(/npm ci/);
    expect(ci).toMatch(/npm test/);
    const projectVars = [
      ...Object.keys(envSchema.shape),
      'ONNXRUNTIME_NODE_INSTALL',
      'ORT_DISABLE_TELEMETRY',
      'EMBEDPOOL_SHARED_DIR',
    ];
    for (const v of projectVars) expect(ci, v).not.toMatch(new RegExp(`\\b${v}=`));
  });

  it('installs nothing but the README prerequisite redis-server', () => {
    const installs = [...ci.matchAll(/apt-get install[^\n]*/g)].map((m) => m[0]);
    expect(installs.length).toBeGreaterThan(0);
    for (const line of installs) {
      const packages = line
        .split(/\s+/)
        .slice(2)
        .filter((w) => w && !/^[->&|]/.test(w));
      expect(packages).toEqual(['redis-server']);
    }
  });
});

describe('the shipped V8 flags (SERVICE_NODE_FLAGS)', () => {
  const flags = SERVICE_NODE_FLAGS.join(' ');

  it('`npm start` and the `embedpool` executable start node with them', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe(`node ${flags} bin/embedpool.js serve`);
    expect(read('bin/embedpool.js').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${flags}`);
    // The shebang line works where it runs (env -S splits the flags from `node`).
    expect(
      execFileSync(join(REPO_ROOT, 'bin/embedpool.js'), ['--version'], { encoding: 'utf8' }).trim(),
    ).toMatch(/^\d+\.\d+\.\d+$/);
  });
});
