import { describe, expect, it } from 'vitest';
import { decodeJobFailure, encodeJobFailure } from './job-failure';

describe('job failure codec', () => {
  it('round-trips a code and a message (multi-line too) through a failedReason string', () => {
    const reason = encodeJobFailure({
      code: 'BAD_REQUEST',
      message: 'invalid job payload:\n  images: expected array',
    });
    expect(decodeJobFailure(reason)).toEqual({
      code: 'BAD_REQUEST',
      message: 'invalid job payload:\n  images: expected array',
    });
  });

  it('reads no code from a reason without one or with a code that is not ours', () => {
    expect(decodeJobFailure('fake crash')).toBeUndefined();
    expect(decodeJobFailure('ECONNRESET: socket hang up')).toBeUndefined();
    expect(decodeJobFailure(undefined)).toBeUndefined();
    expect(decodeJobFailure('')).toBeUndefined();
  });
});
