import { describe, expect, it } from 'vitest';
import { decodedLength, decodesWhole } from './base64';

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;
/** What the slow path accepts: the alphabet, then a length that can be base64. */
const slowAccepts = (s: string, max: number) =>
  BASE64.test(s) && decodedLength(s) > 0 && decodedLength(s) <= max;

/** Deterministic pseudo-random numbers, so a failure names a reproducible case. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const STRAY = [
  '$',
  ' ',
  '\n',
  '\t',
  '\r',
  '=',
  '.',
  '"',
  '\\',
  '\u0000',
  '\u001f',
  '\u007f',
  'é',
  '\u00ff',
  '€',
  '😀',
];

describe('decodesWhole (the fast base64 check)', () => {
  it('accepts well-formed base64 in either alphabet, padded or not', () => {
    const next = rng(7);
    for (let i = 0; i < 500; i++) {
      const bytes = Buffer.from(
        Array.from({ length: 1 + Math.floor(next() * 300) }, () => Math.floor(next() * 256)),
      );
      const std = bytes.toString('base64');
      for (const s of [std, std.replace(/=+$/, ''), bytes.toString('base64url')]) {
        expect(decodesWhole(s, 1024), s).toBe(true);
        expect(slowAccepts(s, 1024), s).toBe(true);
      }
    }
  });

  it('never accepts what the alphabet check refuses: one stray character anywhere', () => {
    const next = rng(11);
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      const bytes = Buffer.from(
        Array.from({ length: 1 + Math.floor(next() * 64) }, () => Math.floor(next() * 256)),
      );
      const good = next() < 0.5 ? bytes.toString('base64') : bytes.toString('base64url');
      const at = Math.floor(next() * (good.length + 1));
      const stray = STRAY[Math.floor(next() * STRAY.length)]!;
      // Replaced (same length) or inserted: both must fail the fast check whenever the slow check fails.
      const s =
        next() < 0.5
          ? good.slice(0, at) + stray + good.slice(at + 1)
          : good.slice(0, at) + stray + good.slice(at);
      const fast = decodesWhole(s, 1024);
      if (fast) expect(slowAccepts(s, 1024), JSON.stringify(s)).toBe(true);
      if (!slowAccepts(s, 1024)) refused++;
    }
    // The mutations really produce invalid strings (else the loop above would prove nothing).
    expect(refused).toBeGreaterThan(2000);
  });

  it('leaves sizes over the limit, empty strings and impossible lengths to the slow path', () => {
    expect(decodesWhole(Buffer.alloc(1025, 1).toString('base64'), 1024)).toBe(false);
    expect(decodesWhole('', 1024)).toBe(false);
    expect(decodesWhole('AAAAA', 1024)).toBe(false);
    // Bigger than the kept scratch buffer: decoded in a buffer of its own, still checked.
    const big = Buffer.alloc(9 * 1024 * 1024, 3).toString('base64');
    expect(decodesWhole(big, 10 * 1024 * 1024)).toBe(true);
    expect(decodesWhole(`${big.slice(0, 100)}$${big.slice(101)}`, 10 * 1024 * 1024)).toBe(false);
  });
});
