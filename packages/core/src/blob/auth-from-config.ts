import type { Config } from '../config';
import type { BlobAuth, BlobRetryOptions } from './blob-client';

/** The deployment's storage account, from whichever of the three BLOB_* variables is set (first wins). */
export function blobAuthFromConfig(config: Config): BlobAuth | undefined {
  if (config.BLOB_CONNECTION_STRING)
    return { kind: 'connection-string', connectionString: config.BLOB_CONNECTION_STRING };
  if (config.BLOB_SAS_URL) return { kind: 'sas-url', url: config.BLOB_SAS_URL };
  if (config.BLOB_ACCOUNT_URL) {
    // A VM or node with several user-assigned identities needs to be told which one to use.
    return {
      kind: 'managed-identity',
      accountUrl: config.BLOB_ACCOUNT_URL,
      ...(config.AZURE_CLIENT_ID ? { clientId: config.AZURE_CLIENT_ID } : {}),
    };
  }
  return undefined;
}

/** The README's storage retry settings: BLOB_MAX_TRIES tries, BLOB_RETRY_DELAY_MS first delay, doubling, capped at 8x. */
export function blobRetryFromConfig(config: Config): Partial<BlobRetryOptions> {
  return {
    maxTries: config.BLOB_MAX_TRIES,
    retryDelayMs: config.BLOB_RETRY_DELAY_MS,
    maxRetryDelayMs: config.BLOB_RETRY_DELAY_MS * 8,
  };
}
