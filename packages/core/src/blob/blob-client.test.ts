import { DefaultAzureCredential } from '@azure/identity';
import { AnonymousCredential, type BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EmbedpoolError } from '../errors';
import { createBlobServiceClient, parseBlobAuth, redactUrl, resolveBlobTarget } from './blob-client';

// Nothing here makes a request: clients are built and inspected, never used.
const KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

function retryOptionsOf(client: BlobServiceClient): Record<string, unknown> {
  return (client as unknown as { pipeline: { options: { retryOptions: Record<string, unknown> } } }).pipeline
    .options.retryOptions;
}

describe('createBlobServiceClient', () => {
  afterEach(() => vi.restoreAllMocks());

  it('selects DefaultAzureCredential for managed identity, without asking it for a token', () => {
    // getToken would probe the instance metadata endpoint; it must not be reached.
    const getToken = vi
      .spyOn(DefaultAzureCredential.prototype, 'getToken')
      .mockRejectedValue(new Error('no'));
    const target = resolveBlobTarget({
      kind: 'managed-identity',
      accountUrl: 'https://myaccount.blob.core.windows.net',
      clientId: '00000000-0000-0000-0000-000000000001',
    });
    expect(target.credentialKind).toBe('token');
    expect(target.client.credential).toBeInstanceOf(DefaultAzureCredential);
    expect(target.client.url).toBe('https://myaccount.blob.core.windows.net/');
    expect(target.client.accountName).toBe('myaccount');
    // Deriving clients makes no request either.
    target.client.getContainerClient('vectors').getBlockBlobClient('a.jsonl');
    expect(getToken).not.toHaveBeenCalled();
  });

  it('refuses managed identity over plain http', () => {
    expect(() =>
      createBlobServiceClient({ kind: 'managed-identity', accountUrl: 'http://x.example/' }),
    ).toThrow(EmbedpoolError);
  });

  it("accepts Azurite's UseDevelopmentStorage=true and an explicit shared-key connection string", () => {
    const dev = resolveBlobTarget({
      kind: 'connection-string',
      connectionString: 'UseDevelopmentStorage=true',
    });
    expect(dev.credentialKind).toBe('shared-key');
    expect(dev.client.credential).toBeInstanceOf(StorageSharedKeyCredential);
    expect(dev.client.url).toBe('http://127.0.0.1:10000/devstoreaccount1');

    const explicit = createBlobServiceClient({
      kind: 'connection-string',
      connectionString: `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${KEY};BlobEndpoint=http://127.0.0.1:12345/devstoreaccount1;`,
    });
    expect(explicit.url).toBe('http://127.0.0.1:12345/devstoreaccount1');
    expect(explicit.accountName).toBe('devstoreaccount1');
  });

  it('sets the retry policy explicitly, and takes overrides', () => {
    const auth = { kind: 'connection-string', connectionString: 'UseDevelopmentStorage=true' } as const;
    expect(retryOptionsOf(createBlobServiceClient(auth))).toMatchObject({
      maxTries: 4,
      tryTimeoutInMs: 30_000,
      retryDelayInMs: 500,
      maxRetryDelayInMs: 4_000,
    });
    expect(
      retryOptionsOf(createBlobServiceClient(auth, { retry: { maxTries: 1, tryTimeoutMs: 2_000 } })),
    ).toMatchObject({ maxTries: 1, tryTimeoutInMs: 2_000 });
    expect(() => createBlobServiceClient(auth, { retry: { maxTries: 0 } })).toThrow(/retry/);
  });

  it('tells a container SAS from an account SAS', () => {
    const container = resolveBlobTarget({
      kind: 'sas-url',
      url: 'https://acct.blob.core.windows.net/vectors?sv=2024-08-04&sr=c&sp=rcw&sig=abc%3D',
    });
    expect(container.credentialKind).toBe('sas');
    expect(container.container).toBe('vectors');
    expect(container.client.credential).toBeInstanceOf(AnonymousCredential);
    expect(container.client.getContainerClient('vectors').getBlockBlobClient('a/b.jsonl').url).toBe(
      'https://acct.blob.core.windows.net/vectors/a/b.jsonl?sv=2024-08-04&sr=c&sp=rcw&sig=abc%3D',
    );

    const pathStyle = resolveBlobTarget({
      kind: 'sas-url',
      url: 'http://127.0.0.1:10000/devstoreaccount1/vectors?sv=2024-08-04&sr=c&sig=abc',
    });
    expect(pathStyle.container).toBe('vectors');
    expect(pathStyle.client.url).toBe('http://127.0.0.1:10000/devstoreaccount1?sv=2024-08-04&sr=c&sig=abc');

    const account = resolveBlobTarget({
      kind: 'sas-url',
      url: 'https://acct.blob.core.windows.net/?sv=2024-08-04&ss=b&srt=co&sp=rwlc&sig=abc',
    });
    expect(account.container).toBeUndefined();
  });

  it('rejects bad auth with CONFIG_INVALID and no secret in the message', () => {
    const bad = [
      { kind: 'sas-url', url: 'https://acct.blob.core.windows.net/vectors?sv=1&sr=c' }, // no sig
      { kind: 'sas-url', url: 'https://acct.blob.core.windows.net/vectors/x.bin?sv=1&sr=b&sig=secret' },
      { kind: 'connection-string', connectionString: 'AccountName=a;AccountKey=secretkey' },
      { kind: 'connection-string', connectionString: '' },
      { kind: 'nope' },
    ];
    for (const auth of bad) {
      let err: unknown;
      try {
        createBlobServiceClient(auth as never);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(auth)).toBeInstanceOf(EmbedpoolError);
      expect((err as EmbedpoolError).code).toBe('CONFIG_INVALID');
      expect((err as Error).message).not.toMatch(/secret/);
    }
    expect(() => parseBlobAuth({ kind: 'sas-url', url: 'ftp://x/y?sig=1' })).toThrow(EmbedpoolError);
  });

  it('redacts query strings from URLs', () => {
    expect(redactUrl('https://a.blob.core.windows.net/c/x.jsonl?sv=1&sig=secret')).toBe(
      'https://a.blob.core.windows.net/c/x.jsonl',
    );
  });
});
