import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { decodeJobFailure, EmbedpoolError, toEmbedpoolError } from '../errors';
import { permanentJobFailure, toJobFailure } from './job-failure';

describe('what a processor throws', () => {
  it('a permanent refusal is unrecoverable for BullMQ and keeps its code in the process', () => {
    const err = permanentJobFailure('NOT_FOUND', 'job record j1 is gone');
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(err.message).toBe('NOT_FOUND: job record j1 is gone');
    expect(toEmbedpoolError(err).toJSON()).toEqual({ code: 'NOT_FOUND', message: 'job record j1 is gone' });
  });

  it('toJobFailure: permanent codes stop retries, transient ones keep them, other errors pass through', () => {
    const permanent = toJobFailure(new EmbedpoolError('IMAGE_DECODE_FAILED', 'bad png'));
    expect(permanent).toBeInstanceOf(UnrecoverableError);
    expect(decodeJobFailure((permanent as Error).message)?.code).toBe('IMAGE_DECODE_FAILED');
    const transient = toJobFailure(new EmbedpoolError('UNAVAILABLE', 'redis away'));
    expect(transient).not.toBeInstanceOf(UnrecoverableError);
    expect(decodeJobFailure((transient as Error).message)).toEqual({
      code: 'UNAVAILABLE',
      message: 'redis away',
    });
    const other = new Error('boom');
    expect(toJobFailure(other)).toBe(other);
  });
});
