/**
 * `embedpool sku` for the sizes the deployments and users pick today (issue 13): each prints a plan and the
 * env its worker processes get; an unknown size names the nearest known ones.
 */
import { describe, expect, it } from 'vitest';
import { runCli } from './run-cli';

describe('embedpool sku', () => {
  it.each([
    [
      'Standard_D8s_v5',
      /^Standard_D8s_v5: 8 vCPUs \(4 cores\), 32\.0 GiB, no GPU$/m,
      'EXECUTION_PROVIDER=cpu',
    ],
    [
      'Standard_NV36ads_A10_v5',
      /^Standard_NV36ads_A10_v5: 36 vCPUs .*, 440\.0 GiB, 1 GPU\(s\) x 24 GiB$/m,
      'EXECUTION_PROVIDER=cuda',
    ],
    [
      'Standard_NC40ads_H100_v5',
      /^Standard_NC40ads_H100_v5: 40 vCPUs .*, 320\.0 GiB, 1 GPU\(s\) x 94 GiB$/m,
      'EXECUTION_PROVIDER=cuda',
    ],
  ])('%s prints a plan', async (size, headline, provider) => {
    const r = await runCli(['sku', size]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(headline);
    expect(r.stdout).toContain(provider);
    expect(r.stdout).toMatch(/^MAX_BATCH_SIZE=\d+$/m);
    expect(r.stdout).not.toMatch(/^warning:/m);
  });

  it('an unknown size names the nearest known ones', async () => {
    const r = await runCli(['sku', 'Standard_NC40ads_H100_v6']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /unknown Azure VM size "Standard_NC40ads_H100_v6"; nearest known sizes: Standard_NC40ads_H100_v5, /,
    );
  });
});
