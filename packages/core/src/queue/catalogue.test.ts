import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config';
import { INGEST_JOBS, INGEST_QUEUES } from '../ingest/names';
import {
  DEFAULT_RETRY_POLICY,
  JOB_CATALOGUE,
  JOB_NAMES,
  jobOptions,
  jobsOn,
  QUEUE_NAMES,
  retryPolicyFrom,
} from './catalogue';
import type { Handlers } from './dispatch';
import { JOBS, QUEUES } from './names';

describe('job catalogue', () => {
  it('names every job of every queue, each with a queue, a schema and options', () => {
    expect([...JOB_NAMES].sort()).toEqual(
      ['callback', 'chunk', 'deliver', 'embed-job', 'finalize', 'plan', 'score'].sort(),
    );
    expect([...QUEUE_NAMES].sort()).toEqual(
      [QUEUES.embed, QUEUES.deliveries, INGEST_QUEUES.plan, INGEST_QUEUES.chunks].sort(),
    );
    for (const name of JOB_NAMES) {
      const spec = JOB_CATALOGUE[name];
      expect(QUEUE_NAMES).toContain(spec.queue);
      expect(typeof spec.schema.safeParse).toBe('function');
      const opts = jobOptions(name, DEFAULT_RETRY_POLICY);
      expect(opts.attempts).toBeGreaterThanOrEqual(1);
      expect(opts.backoff).toMatchObject({ delay: expect.any(Number) });
      expect(opts.removeOnComplete).toBe(true);
      expect(opts.removeOnFail).toBeDefined();
    }
    expect(jobsOn(QUEUES.embed).sort()).toEqual([JOBS.embedJob, JOBS.score].sort());
    expect(jobsOn(INGEST_QUEUES.plan).sort()).toEqual(
      [INGEST_JOBS.callback, INGEST_JOBS.finalize, INGEST_JOBS.plan].sort(),
    );
  });

  it('takes every retry policy from the Config', () => {
    const config = loadConfig({
      SCORE_ATTEMPTS: '2',
      SCORE_BACKOFF_MS: '50',
      JOB_ATTEMPTS: '4',
      JOB_BACKOFF_MS: '60',
      INGEST_ATTEMPTS: '6',
      INGEST_BACKOFF_MS: '70',
      CALLBACK_ATTEMPTS: '9',
      CALLBACK_BACKOFF_MS: '80',
      JOB_TTL_S: '3600',
    });
    const policy = retryPolicyFrom(config);
    const of = (name: (typeof JOB_NAMES)[number]) => {
      const o = jobOptions(name, policy);
      return [o.attempts, (o.backoff as { delay: number }).delay];
    };
    expect(of('score')).toEqual([2, 50]);
    expect(of('embed-job')).toEqual([4, 60]);
    expect(of('plan')).toEqual([6, 70]);
    expect(of('finalize')).toEqual([6, 70]);
    expect(of('chunk')).toEqual([6, 70]);
    expect(of('callback')).toEqual([9, 80]);
    expect(of('deliver')).toEqual([9, 80]);
    expect(jobOptions('deliver', policy).removeOnFail).toEqual({ age: 3600 });
    // Async jobs queue behind /score requests, which carry no priority.
    expect(jobOptions('embed-job', policy).priority).toBe(100);
    expect(jobOptions('score', policy).priority).toBeUndefined();
  });

  it('has the documented defaults, the same as an empty Config', () => {
    expect(retryPolicyFrom(loadConfig({}))).toEqual(DEFAULT_RETRY_POLICY);
    expect(retryPolicyFrom({})).toEqual(DEFAULT_RETRY_POLICY);
  });

  it('makes a worker without a handler for one of its queue’s jobs a compile error', () => {
    const handler = async () => undefined;
    const complete: Handlers<'embed'> = { score: handler, 'embed-job': handler };
    // @ts-expect-error: 'embed-job' has no handler
    const missing: Handlers<'embed'> = { score: handler };
    // @ts-expect-error: 'deliver' is not a job of the embed queue
    const foreign: Handlers<'embed'> = { score: handler, 'embed-job': handler, deliver: handler };
    expect([complete, missing, foreign].length).toBe(3);
  });
});
