import { describe, expect, it } from 'vitest';
import { isRetryable, retryBudget } from './retry';

const err = (code: string) => Object.assign(new Error(code), { code });

describe('download retry policy', () => {
  it('retries a host name that does not resolve once, not with the whole budget', () => {
    expect(isRetryable(err('ENOTFOUND'))).toBe(true);
    expect(retryBudget(err('ENOTFOUND'), 5)).toBe(1);
    expect(retryBudget(err('ENOTFOUND'), 0)).toBe(0);
  });

  it('keeps the whole budget for failures that pass (resets, time-outs, a resolver hiccup)', () => {
    for (const code of ['ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN']) expect(retryBudget(err(code), 5)).toBe(5);
  });
});
