import { describe, expect, it } from 'vitest';
import { EmbedpoolError } from '../errors';
import { expandPathTemplate, formatUtcDate, PathTemplateError, parsePathTemplate } from './path-template';

function reason(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PathTemplateError);
    expect(err).toBeInstanceOf(EmbedpoolError);
    expect((err as PathTemplateError).code).toBe('CONFIG_INVALID');
    return (err as PathTemplateError).reason;
  }
  return undefined;
}

describe('path templates', () => {
  it('expands every placeholder', () => {
    const path = expandPathTemplate('out/{date}/{jobId}/{index}-{itemId}', {
      jobId: 'job-1',
      itemId: 'cat.png',
      date: new Date('2025-01-31T23:59:59.999Z'),
      index: 7,
    });
    expect(path).toBe('out/2025-01-31/job-1/7-cat.png');
  });

  it('renders {date} as the UTC calendar date, from a Date, epoch ms or ISO string', () => {
    // 23:30 at UTC-5 is already the next day in UTC.
    expect(formatUtcDate('2025-03-01T23:30:00-05:00')).toBe('2025-03-02');
    expect(formatUtcDate(Date.UTC(2024, 1, 29, 12))).toBe('2024-02-29');
    expect(expandPathTemplate('{date}/{jobId}', { jobId: 'j', date: '2025-06-07T00:00:00Z' })).toBe(
      '2025-06-07/j',
    );
  });

  it('lists the placeholders a template uses', () => {
    expect([...parsePathTemplate('a/{jobId}/{date}{jobId}').placeholders].sort()).toEqual(['date', 'jobId']);
    expect(parsePathTemplate('plain/name').placeholders.size).toBe(0);
  });

  it('rejects templates that escape or are malformed', () => {
    expect(reason(() => parsePathTemplate(''))).toBe('empty');
    expect(reason(() => parsePathTemplate('/abs/{jobId}'))).toBe('absolute');
    expect(reason(() => parsePathTemplate('../{jobId}'))).toBe('escape');
    expect(reason(() => parsePathTemplate('a/../../{jobId}'))).toBe('escape');
    expect(reason(() => parsePathTemplate('a/./{jobId}'))).toBe('escape');
    expect(reason(() => parsePathTemplate('a//{jobId}'))).toBe('escape');
    expect(reason(() => parsePathTemplate('a\\{jobId}'))).toBe('bad-char');
    expect(reason(() => parsePathTemplate('a/{jobId}\n'))).toBe('bad-char');
    expect(reason(() => parsePathTemplate('a/{jobid}'))).toBe('unknown-placeholder');
    expect(reason(() => parsePathTemplate('a/{user}/{jobId}'))).toBe('unknown-placeholder');
    expect(reason(() => parsePathTemplate('a/{}'))).toBe('unknown-placeholder');
    expect(reason(() => parsePathTemplate('a/{jobId'))).toBe('bad-brace');
    expect(reason(() => parsePathTemplate('a/jobId}'))).toBe('bad-brace');
    expect(reason(() => parsePathTemplate('x'.repeat(1025)))).toBe('too-long');
  });

  it('enforces allowed and required placeholders', () => {
    expect(reason(() => parsePathTemplate('a/{jobId}/{itemId}', { allowed: ['jobId', 'date'] }))).toBe(
      'placeholder-not-allowed',
    );
    expect(reason(() => parsePathTemplate('a/{date}', { required: ['jobId'] }))).toBe('placeholder-required');
    expect(parsePathTemplate('a/{jobId}', { allowed: ['jobId'], required: ['jobId'] }).template).toBe(
      'a/{jobId}',
    );
  });

  it('rejects values that would escape or are missing', () => {
    expect(reason(() => expandPathTemplate('a/{jobId}', {}))).toBe('missing-value');
    expect(reason(() => expandPathTemplate('a/{jobId}', { jobId: '..' }))).toBe('bad-value');
    expect(reason(() => expandPathTemplate('a/{jobId}', { jobId: '.' }))).toBe('bad-value');
    expect(reason(() => expandPathTemplate('a/{jobId}', { jobId: '../x' }))).toBe('bad-value');
    expect(reason(() => expandPathTemplate('a/{jobId}', { jobId: 'x/y' }))).toBe('bad-value');
    expect(reason(() => expandPathTemplate('a/{jobId}', { jobId: 'x\\y' }))).toBe('bad-value');
    expect(reason(() => expandPathTemplate('a/{jobId}', { jobId: '' }))).toBe('bad-value');
    expect(reason(() => expandPathTemplate('a/{jobId}', { jobId: 'a\u0000' }))).toBe('bad-value');
    expect(reason(() => expandPathTemplate('a/{index}', { index: -1 }))).toBe('bad-value');
    expect(reason(() => expandPathTemplate('a/{index}', { index: 1.5 }))).toBe('bad-value');
    expect(reason(() => expandPathTemplate('a/{date}', { date: 'not a date' }))).toBe('bad-value');
    // A value may hold dots, as long as it is not a dot segment.
    expect(expandPathTemplate('a/{jobId}', { jobId: '..x..' })).toBe('a/..x..');
  });
});
