import { DefaultAzureCredential } from '@azure/identity';
import {
  AnonymousCredential,
  BlobServiceClient,
  type StoragePipelineOptions,
  StorageRetryPolicyType,
} from '@azure/storage-blob';
import { z } from 'zod';
import { EmbedpoolError } from '../errors';

/**
 * How to reach Azure Blob storage:
 * - `connection-string`: a shared-key connection string, e.g. Azurite's `UseDevelopmentStorage=true` or
 *   `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=...;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;`
 *   (a `SharedAccessSignature=` connection string works too);
 * - `sas-url`: an account SAS (`https://acct.blob.core.windows.net/?sv=...&ss=b&srt=...&sig=...`) or a
 *   container SAS (`https://acct.blob.core.windows.net/<container>?sv=...&sr=c&sig=...`). A container SAS
 *   only reaches its container: use `resolveBlobTarget` to learn its name;
 * - `managed-identity`: an https account URL and `DefaultAzureCredential` (managed identity on Azure VMs,
 *   workload identity, env vars, az login). `clientId` picks a user-assigned identity. Nothing is asked of
 *   the credential until the first storage request.
 */
export const blobAuthSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('connection-string'), connectionString: z.string().min(1) }),
  z.object({ kind: z.literal('sas-url'), url: z.url({ protocol: /^https?$/ }) }),
  z.object({
    kind: z.literal('managed-identity'),
    // Bearer tokens only travel over TLS.
    accountUrl: z.url({ protocol: /^https$/ }),
    clientId: z.string().min(1).optional(),
  }),
]);
export type BlobAuth = z.infer<typeof blobAuthSchema>;

/**
 * The SDK's per-request retry policy, set explicitly rather than left to its defaults (4 tries, 4 s base
 * delay, up to 120 s between tries, no request timeout). Exponential: delays of 0, 1x, 3x, 7x `retryDelayMs`,
 * capped at `maxRetryDelayMs`. The SDK retries network errors and HTTP 500/503; `writeJobVectors` adds its
 * own bounded retry and a client-side deadline on top.
 */
export const blobRetrySchema = z.object({
  maxTries: z.number().int().min(1).max(10).default(4),
  /** Sent as the service-side `timeout` (whole seconds) of each try. */
  tryTimeoutMs: z.number().int().min(1_000).max(600_000).default(30_000),
  retryDelayMs: z.number().int().min(0).max(60_000).default(500),
  maxRetryDelayMs: z.number().int().min(0).max(120_000).default(4_000),
});
export type BlobRetryOptions = z.infer<typeof blobRetrySchema>;
export const DEFAULT_BLOB_RETRY: BlobRetryOptions = blobRetrySchema.parse({});

export interface BlobClientOptions {
  retry?: Partial<BlobRetryOptions>;
}

export type BlobCredentialKind = 'shared-key' | 'sas' | 'token';

export interface BlobTarget {
  client: BlobServiceClient;
  /** The container a container SAS is scoped to; undefined for account-wide auth. */
  container: string | undefined;
  credentialKind: BlobCredentialKind;
}

const CONTAINER_NAME = /^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

/** Azure's container naming rules: 3-63 chars, lowercase letters, digits and single hyphens. */
export function isValidContainerName(name: string): boolean {
  return CONTAINER_NAME.test(name) || name === '$root';
}

function configError(message: string, cause?: unknown): EmbedpoolError {
  return new EmbedpoolError('CONFIG_INVALID', message, cause === undefined ? undefined : { cause });
}

/** Validates an unknown value as BlobAuth; the error names the field, never a secret. */
export function parseBlobAuth(input: unknown): BlobAuth {
  const parsed = blobAuthSchema.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw configError(`invalid blob storage auth: ${issues}`);
  }
  return parsed.data;
}

export function blobPipelineOptions(retry?: Partial<BlobRetryOptions>): StoragePipelineOptions {
  const r = parseRetry(retry);
  return {
    retryOptions: {
      retryPolicyType: StorageRetryPolicyType.EXPONENTIAL,
      maxTries: r.maxTries,
      tryTimeoutInMs: r.tryTimeoutMs,
      retryDelayInMs: r.retryDelayMs,
      maxRetryDelayInMs: Math.max(r.maxRetryDelayMs, r.retryDelayMs),
    },
    userAgentOptions: { userAgentPrefix: 'embedpool' },
  };
}

function parseRetry(retry: Partial<BlobRetryOptions> | undefined): BlobRetryOptions {
  const parsed = blobRetrySchema.safeParse(retry ?? {});
  if (!parsed.success) {
    throw configError(`invalid blob retry options: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  }
  return parsed.data;
}

/** A URL for messages and results: no query string, so no SAS signature leaks into logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.search = '';
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return '(invalid url)';
  }
}

function sasTarget(url: string, options: StoragePipelineOptions): BlobTarget {
  const u = new URL(url);
  if (!u.searchParams.get('sig')) throw configError(`SAS URL ${redactUrl(url)} has no signature (sig=)`);
  const resource = u.searchParams.get('sr');
  let container: string | undefined;
  if (resource === 'c') {
    // Container SAS: the container is the last path segment, whether the account is in the host
    // (acct.blob.core.windows.net/<container>) or in the path (127.0.0.1:10000/devstoreaccount1/<container>).
    const segments = u.pathname.split('/').filter(Boolean);
    container = segments.pop();
    if (!container || !isValidContainerName(decodeURIComponent(container))) {
      throw configError(`container SAS URL ${redactUrl(url)} does not name a valid container`);
    }
    container = decodeURIComponent(container);
    u.pathname = `/${segments.join('/')}`;
  } else if (resource) {
    throw configError(
      `SAS URL ${redactUrl(url)} is scoped to sr=${resource}; use an account or container SAS`,
    );
  }
  // The SAS query rides along on every URL the service client derives (container, blob).
  const client = new BlobServiceClient(u.toString(), new AnonymousCredential(), options);
  return { client, container, credentialKind: 'sas' };
}

/**
 * Builds a BlobServiceClient for `auth` and tells which container, if any, the credential is scoped to.
 * Only the `managed-identity` kind constructs a DefaultAzureCredential; construction makes no request.
 */
export function resolveBlobTarget(auth: BlobAuth, options: BlobClientOptions = {}): BlobTarget {
  const valid = parseBlobAuth(auth);
  const pipeline = blobPipelineOptions(options.retry);
  switch (valid.kind) {
    case 'connection-string': {
      let client: BlobServiceClient;
      try {
        client = BlobServiceClient.fromConnectionString(valid.connectionString, pipeline);
      } catch (err) {
        // The SDK's messages name the missing part, not the key.
        throw configError(
          `invalid blob storage connection string: ${err instanceof Error ? err.message : String(err)}`,
          err,
        );
      }
      const kind: BlobCredentialKind =
        client.credential instanceof AnonymousCredential ? 'sas' : 'shared-key';
      return { client, container: undefined, credentialKind: kind };
    }
    case 'sas-url':
      return sasTarget(valid.url, pipeline);
    case 'managed-identity': {
      const credential = new DefaultAzureCredential(
        valid.clientId ? { managedIdentityClientId: valid.clientId } : undefined,
      );
      const client = new BlobServiceClient(valid.accountUrl, credential, pipeline);
      return { client, container: undefined, credentialKind: 'token' };
    }
  }
}

/** `resolveBlobTarget(auth, options).client`. */
export function createBlobServiceClient(auth: BlobAuth, options: BlobClientOptions = {}): BlobServiceClient {
  return resolveBlobTarget(auth, options).client;
}
