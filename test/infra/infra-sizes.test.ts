/**
 * The VM sizes the deployments name (Terraform worker pools, the AKS node pool commands in infra/README.md,
 * docs/sizing.md) are sizes the `embedpool sku` catalogue knows, and each gets a worker plan.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseHcl } from '@cdktn/hcl2json';
import { findVmSize, planForSize } from '@embedpool/core/sku';
import { REPO_ROOT } from '@embedpool/testkit';
import { describe, expect, it } from 'vitest';

const read = (rel: string) => readFileSync(join(REPO_ROOT, rel), 'utf8');
const SIZE = /\bStandard_[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*\b/g;

/** Every `Standard_*` name written in the deployment files and the sizing docs, with where it was found. */
function namedSizes(): [string, string][] {
  const files = [
    ...readdirSync(join(REPO_ROOT, 'infra/azure'))
      .filter((f) => f.endsWith('.tf') || f.endsWith('.example'))
      .map((f) => `infra/azure/${f}`),
    ...readdirSync(join(REPO_ROOT, 'infra/k8s')).map((f) => `infra/k8s/${f}`),
    'infra/README.md',
    'docs/sizing.md',
    'docker-compose.yml',
  ];
  // A line about unknown sizes names one on purpose (docs/sizing.md's error example and the next line).
  return files.flatMap((f) => {
    const lines = read(f).split('\n');
    return lines
      .filter((l, i) => !/unknown/i.test(l) && !/unknown/i.test(lines[i - 1] ?? ''))
      .flatMap((l) => [...l.matchAll(SIZE)].map((m): [string, string] => [f, m[0]]));
  });
}

describe('sizes the infra names are in the catalogue', () => {
  it('the Terraform worker pools default to catalogued sizes with a plan', async () => {
    const hcl = (await parseHcl('variables.tf', read('infra/azure/variables.tf'))) as {
      variable: { worker_pools: { default: Record<string, { vm_size: string; gpu: boolean }> }[] };
    };
    const pools = hcl.variable.worker_pools[0]!.default;
    expect(Object.keys(pools).sort()).toEqual(['cpu', 'gpu']);
    for (const [name, pool] of Object.entries(pools)) {
      const vm = findVmSize(pool.vm_size);
      expect(vm, `worker_pools.${name}.vm_size ${pool.vm_size}`).toBeDefined();
      expect(vm!.gpuCount > 0, `${pool.vm_size} gpu`).toBe(pool.gpu);
      expect(planForSize(vm!).provider).toBe(pool.gpu ? 'cuda' : 'cpu');
    }
  });

  it('every Standard_* size written in infra/ and docs/sizing.md is known', () => {
    const named = namedSizes();
    expect(named.map(([, s]) => s)).toEqual(
      expect.arrayContaining(['Standard_D8s_v5', 'Standard_NC4as_T4_v3']),
    );
    expect(named.filter(([, s]) => !findVmSize(s)).map(([f, s]) => `${f}: ${s}`)).toEqual([]);
  });
});
