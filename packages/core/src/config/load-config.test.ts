import { describe, expect, it } from 'vitest';
import { EmbedpoolError } from '../errors';
import { loadConfig } from './load-config';

describe('loadConfig', () => {
  it('gives the embedded defaults for an empty environment', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      PORT: 8080,
      HOST: '127.0.0.1',
      REDIS_URL: 'redis://127.0.0.1:6379',
      MAX_BATCH_SIZE: 16,
      BATCH_WAIT_MS: 5,
      EXECUTION_PROVIDER: 'cpu',
      FETCH_ALLOW: [],
      REDIS_AUTOSTART: true,
    });
    expect(c.MODEL_PATH).toBeUndefined();
  });

  it('gives every job its retry policy: attempts and first backoff per job kind', () => {
    expect(loadConfig({})).toMatchObject({
      SCORE_ATTEMPTS: 3,
      SCORE_BACKOFF_MS: 500,
      JOB_ATTEMPTS: 3,
      JOB_BACKOFF_MS: 1000,
      INGEST_ATTEMPTS: 5,
      INGEST_BACKOFF_MS: 1000,
      CALLBACK_ATTEMPTS: 8,
      CALLBACK_BACKOFF_MS: 1000,
    });
    const c = loadConfig({
      SCORE_ATTEMPTS: '1',
      SCORE_BACKOFF_MS: '50',
      JOB_BACKOFF_MS: '20',
      INGEST_BACKOFF_MS: '30',
    });
    expect([c.SCORE_ATTEMPTS, c.SCORE_BACKOFF_MS, c.JOB_BACKOFF_MS, c.INGEST_BACKOFF_MS]).toEqual([
      1, 50, 20, 30,
    ]);
    expect(() => loadConfig({ SCORE_ATTEMPTS: '0' })).toThrow(/SCORE_ATTEMPTS/);
  });

  it('coerces numbers, booleans and lists', () => {
    const c = loadConfig({
      PORT: '9000',
      REDIS_AUTOSTART: 'false',
      FETCH_ALLOW: '127.0.0.0/8, ::1',
      MAX_BATCH_SIZE: '8',
    });
    expect(c.PORT).toBe(9000);
    expect(c.REDIS_AUTOSTART).toBe(false);
    expect(c.FETCH_ALLOW).toEqual(['127.0.0.0/8', '::1']);
    expect(c.MAX_BATCH_SIZE).toBe(8);
  });

  it('names every bad variable and its value', () => {
    let err: unknown;
    try {
      loadConfig({ PORT: 'eighty', MAX_BATCH_SIZE: '0', EXECUTION_PROVIDER: 'tpu' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EmbedpoolError);
    const e = err as EmbedpoolError;
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toContain('PORT="eighty"');
    expect(e.message).toContain('MAX_BATCH_SIZE');
    expect(e.message).toContain('EXECUTION_PROVIDER="tpu" is not valid (expected one of cpu, cuda)');
    expect(e.message).toContain('MAX_BATCH_SIZE="0" is not valid (expected at least 1)');
    expect(e.message).not.toMatch(/\n| {4}at /);
  });

  it("never repeats a secret's value, only its name", () => {
    const secrets = {
      METRICS_TOKEN: 'tok-SHORT',
      CALLBACK_SECRET: 'sec-SHORT',
      API_KEYS: 'alice:sk-live-RAWKEY',
      REDIS_URL: 'not a url :p4ssw0rd',
    };
    let message = '';
    try {
      loadConfig(secrets);
    } catch (e) {
      message = (e as Error).message;
    }
    for (const [name, value] of Object.entries(secrets)) {
      expect(message).toContain(`${name}=(value hidden) is not valid`);
      expect(message).not.toContain(value);
    }
    expect(message).toMatch(/Fix these variables or unset them/);
  });

  it('ignores empty strings so an unset-but-exported variable keeps its default', () => {
    expect(loadConfig({ PORT: '' }).PORT).toBe(8080);
  });

  it('turns QUEUE_PREFIX into a cluster hash tag, keeping one already in braces', () => {
    expect(loadConfig({}).QUEUE_PREFIX).toBe('{embedpool}');
    expect(loadConfig({ QUEUE_PREFIX: 'fleet-a' }).QUEUE_PREFIX).toBe('{fleet-a}');
    expect(loadConfig({ QUEUE_PREFIX: '{fleet-a}' }).QUEUE_PREFIX).toBe('{fleet-a}');
    expect(() => loadConfig({ QUEUE_PREFIX: 'a}b' })).toThrow(/QUEUE_PREFIX/);
  });

  it('takes a list of seed nodes only with REDIS_CLUSTER=true', () => {
    const seeds = 'rediss://:key@amr.example.net:10000,rediss://amr.example.net:10001';
    expect(loadConfig({ REDIS_URL: seeds, REDIS_CLUSTER: 'true' }).REDIS_URL).toBe(seeds);
    expect(() => loadConfig({ REDIS_URL: seeds })).toThrow(/REDIS_CLUSTER=true/);
    expect(() => loadConfig({ REDIS_URL: 'http://x:1' })).toThrow(/REDIS_URL/);
  });

  it('parses worker pools with optional default rates', () => {
    const c = loadConfig({ AUTOSCALE_POOLS: 'cpu, gpu:40', WORKER_POOL: 'gpu' });
    expect(c.AUTOSCALE_POOLS).toEqual([{ name: 'cpu' }, { name: 'gpu', rate: 40 }]);
    expect(c.WORKER_POOL).toBe('gpu');
    expect(() => loadConfig({ AUTOSCALE_POOLS: 'GPU:fast' })).toThrow(/AUTOSCALE_POOLS/);
  });
});
