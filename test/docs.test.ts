import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { envSchema } from '@embedpool/core/config';
import { REPO_ROOT } from '@embedpool/testkit';
import { describe, expect, it } from 'vitest';

const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const example = readFileSync(join(REPO_ROOT, '.env.example'), 'utf8');
const variables = Object.keys(envSchema.shape);

describe('documentation keeps up with the config', () => {
  it.each(variables)('README documents %s', (name) => {
    expect(readme).toContain(`\`${name}\``);
  });

  it.each(variables)('.env.example lists %s', (name) => {
    expect(example).toMatch(new RegExp(`^#? ?${name}=`, 'm'));
  });

  it('README gives the two commands', () => {
    expect(readme).toContain('npm start');
    expect(readme).toContain('npm test');
  });

  it('.ci/run runs the README test command', () => {
    expect(readFileSync(join(REPO_ROOT, '.ci/run'), 'utf8')).toMatch(/^clean npm test$/m);
  });
});
