import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { type RedisSettings, useEntraRedisAuth } from './connection';
import { EntraRedisAuth } from './redis-entra';

let prepared: Promise<void> | undefined;

/**
 * Call once at boot, before the first `createRedis`: with REDIS_AUTH=entra it fetches the first Microsoft
 * Entra token (DefaultAzureCredential: managed identity on Azure, AZURE_CLIENT_ID picks a user-assigned
 * one) and keeps it fresh for the process's lifetime. With access keys (the password in REDIS_URL) it does
 * nothing. Idempotent, so the API and worker of an all-in-one process may both call it.
 */
export function prepareRedisAuth(
  config: RedisSettings & { REDIS_ENTRA_USER?: string | undefined },
  opts: { credential?: TokenCredential; onError?: (err: Error) => void } = {},
): Promise<void> {
  if (config.REDIS_AUTH !== 'entra') return Promise.resolve();
  prepared ??= (async () => {
    const auth = new EntraRedisAuth(opts.credential ?? new DefaultAzureCredential(), {
      ...(config.REDIS_ENTRA_USER ? { user: config.REDIS_ENTRA_USER } : {}),
      ...(opts.onError ? { onError: opts.onError } : {}),
    });
    await auth.ready();
    useEntraRedisAuth(auth);
  })().catch((err) => {
    prepared = undefined;
    throw err;
  });
  return prepared;
}
