import { createLogger, type Logger } from '@embedpool/core/logger';
import { createRedis } from '@embedpool/core/queue';
import { freePort } from '@embedpool/testkit';
import {
  cleanupPrefix,
  postJson,
  scoreBody,
  TEST_REDIS_URL,
  testConfig,
  uniquePrefix,
} from '@embedpool/testkit/api-test-kit';
import { FakeWorker } from '@embedpool/testkit/fake-worker';
import { describe, expect, it } from 'vitest';
import { startApi } from './index';

const PNG_B64 = Buffer.from('fake image').toString('base64');

/** A logger that keeps each entry's message instead of printing it. */
function recordingLogger(): { logger: Logger; messages: string[] } {
  const messages: string[] = [];
  const logger = createLogger({
    name: 'api',
    level: 'info',
    format: 'json',
    hooks: {
      logMethod(args) {
        messages.push(String(args.at(-1)));
      },
    },
  });
  return { logger, messages };
}

describe('API start-up', () => {
  it('is listening only once its producer connection can take commands (the event listener starts from it)', async () => {
    const prefix = uniquePrefix('boot');
    const { logger, messages } = recordingLogger();
    // Its own connection, passed in, so the test can see its state the moment startApi returns.
    const producer = createRedis(TEST_REDIS_URL, 'producer');
    const api = await startApi({ config: testConfig({ QUEUE_PREFIX: prefix }), redis: producer, logger });
    const worker = new FakeWorker(TEST_REDIS_URL, prefix);
    try {
      expect(messages).toContain('API listening');
      // No offline queue: a request taken before 'ready' would answer 503.
      expect(producer.status).toBe('ready');
      await worker.ready();
      await worker.heartbeat();
      expect((await postJson(`${api.url}/score`, scoreBody([PNG_B64]))).status).toBe(200);
    } finally {
      await api.close();
      await worker.close();
      producer.disconnect();
      await cleanupPrefix(TEST_REDIS_URL, prefix);
    }
  });

  it('says Redis is not reachable yet while its producer cannot connect, and answers 503', async () => {
    const prefix = uniquePrefix('boot-down');
    const { logger, messages } = recordingLogger();
    // REDIS_URL is up; the producer points where nothing listens.
    const producer = createRedis(`redis://127.0.0.1:${await freePort()}`, 'producer');
    const api = await startApi({
      config: testConfig({ QUEUE_PREFIX: prefix }),
      redis: producer,
      logger,
      readyTimeoutMs: 300,
    });
    try {
      expect(messages).toContain('API listening, but Redis is not reachable yet: /score answers 503');
      expect(messages).not.toContain('API listening');
      expect((await postJson(`${api.url}/score`, scoreBody([PNG_B64]))).status).toBe(503);
    } finally {
      await api.close();
      producer.disconnect();
      await cleanupPrefix(TEST_REDIS_URL, prefix);
    }
  });
});
