import { describe, expect, it } from 'vitest';
import { requestHash } from './job-request';

describe('requestHash', () => {
  it('ignores key order and keeps the value records already stored under Idempotency-Keys', () => {
    const a = {
      images: [
        { id: 'a', base64: 'QUJD' },
        { id: 'b', url: 'https://x/y.jpg' },
      ],
      output: { type: 'inline' as const },
      normalize: true,
    };
    const b = {
      normalize: true,
      output: { type: 'inline' as const },
      images: [
        { base64: 'QUJD', id: 'a' },
        { url: 'https://x/y.jpg', id: 'b' },
      ],
    };
    // The digest of the canonical string the first version built whole (sha256, 32 hex digits).
    expect(requestHash(a as never)).toBe('1f47f42127776ec2afdeda1058d706f5');
    expect(requestHash(b as never)).toBe(requestHash(a as never));
  });
});
