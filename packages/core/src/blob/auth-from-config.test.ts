import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config';
import { blobRetryFromConfig } from './auth-from-config';
import { blobPipelineOptions } from './blob-client';

describe('blobRetryFromConfig', () => {
  it("maps the README's storage retry variables: tries, first delay, doubling capped at 8x", () => {
    const config = loadConfig({ BLOB_MAX_TRIES: '2', BLOB_RETRY_DELAY_MS: '250' });
    expect(blobRetryFromConfig(config)).toEqual({ maxTries: 2, retryDelayMs: 250, maxRetryDelayMs: 2000 });
    expect(blobPipelineOptions(blobRetryFromConfig(config)).retryOptions).toMatchObject({
      maxTries: 2,
      retryDelayInMs: 250,
      maxRetryDelayInMs: 2000,
    });
  });
});
