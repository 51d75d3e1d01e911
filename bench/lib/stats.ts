import { cosine } from '@embedpool/testkit';
/** Order statistics for timing samples. Every summary says what it summarises in its field names. */
export interface Summary {
  n: number;
  median: number;
  p95: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

/** Linear interpolation between closest ranks (numpy's default), on a sorted copy. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export const median = (values: readonly number[]): number => quantile(values, 0.5);

export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) {
    return { n: 0, median: Number.NaN, p95: Number.NaN, p99: Number.NaN, min: 0, max: 0, mean: Number.NaN };
  }
  return {
    n: values.length,
    median: quantile(values, 0.5),
    p95: quantile(values, 0.95),
    p99: quantile(values, 0.99),
    min: Math.min(...values),
    max: Math.max(...values),
    mean: values.reduce((a, b) => a + b, 0) / values.length,
  };
}

/** Rounds for the JSON: enough digits to be useful, not float noise. */
export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function roundSummary(s: Summary, digits = 3): Summary {
  return {
    n: s.n,
    median: round(s.median, digits),
    p95: round(s.p95, digits),
    p99: round(s.p99, digits),
    min: round(s.min, digits),
    max: round(s.max, digits),
    mean: round(s.mean, digits),
  };
}

/** Cosine (the testkit's, as the parity tests compute it) and mean absolute difference of two vectors. */
export function compareVectors(a: ArrayLike<number>, b: ArrayLike<number>): { cosine: number; mad: number } {
  const c = cosine(a, b); // throws on a length mismatch
  let abs = 0;
  for (let i = 0; i < a.length; i++) abs += Math.abs(a[i]! - b[i]!);
  return { cosine: c, mad: abs / a.length };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
