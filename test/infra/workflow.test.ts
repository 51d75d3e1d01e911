/**
 * .github/workflows/images.yml: valid GitHub Actions syntax (action-validator, GitHub's workflow schema),
 * run on version tags only, building and pushing exactly the three Dockerfiles in infra/docker.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateWorkflow } from '@action-validator/core';
import { REPO_ROOT } from '@embedpool/testkit';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const FILE = join(REPO_ROOT, '.github/workflows/images.yml');
const source = readFileSync(FILE, 'utf8');

// biome-ignore lint/suspicious/noExplicitAny: walking untyped YAML
type Json = Record<string, any>;

describe('the image publishing workflow', () => {
  it('is a valid GitHub Actions workflow (and the validator is not vacuous)', () => {
    const result = validateWorkflow(source);
    expect(result.errors, JSON.stringify(result.errors, null, 2)).toEqual([]);
    const broken = source.replace('runs-on: ubuntu-24.04', 'runs_on: ubuntu-24.04');
    expect(validateWorkflow(broken).errors.length).toBeGreaterThan(0);
  });

  it('runs on version tags only, with package write permission', () => {
    const wf = parse(source) as Json;
    expect(Object.keys(wf.on)).toEqual(['push']);
    expect(wf.on.push).toEqual({ tags: ['v*.*.*'] });
    expect(wf.permissions).toEqual({ contents: 'read', packages: 'write' });
  });

  it('builds and pushes each of the three Dockerfiles in infra/docker', () => {
    const wf = parse(source) as Json;
    const job = wf.jobs.image as Json;
    const matrix = job.strategy.matrix.include as { image: string; dockerfile: string }[];
    const dockerfiles = readdirSync(join(REPO_ROOT, 'infra/docker'))
      .filter((f) => f.endsWith('.Dockerfile'))
      .map((f) => `infra/docker/${f}`)
      .sort();
    expect(matrix.map((m) => m.dockerfile).sort()).toEqual(dockerfiles);
    expect(matrix.map((m) => m.image).sort()).toEqual(['api', 'worker-cpu', 'worker-gpu']);
    for (const m of matrix) expect(existsSync(join(REPO_ROOT, m.dockerfile))).toBe(true);
    const build = (job.steps as Json[]).find((s) => String(s.uses).startsWith('docker/build-push-action@'));
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a GitHub Actions expression, literally.
    expect(build?.with).toMatchObject({ context: '.', push: true, file: '${{ matrix.dockerfile }}' });
  });
});
