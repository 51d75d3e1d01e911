import { describe, expect, it } from 'vitest';
import { jobIdTime, newJobId } from './ids';

describe('job ids', () => {
  it('are RFC 9562 UUIDv7 strings that carry their minting time', () => {
    const at = Date.UTC(2026, 11, 4, 10, 0, 0, 123);
    const id = newJobId(at);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(jobIdTime(id)).toBe(at);
  });

  it('differ from each other and sort by time', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newJobId()));
    expect(ids.size).toBe(1000);
    expect(newJobId(1_000) < newJobId(2_000)).toBe(true);
  });

  it('leave a UUIDv4 without a time', () => {
    expect(jobIdTime('9b2d9a4e-5f0c-4d7e-8a1b-2c3d4e5f6a7b')).toBeUndefined();
  });
});
