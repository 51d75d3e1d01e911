import { createHash, randomUUID } from 'node:crypto';
import {
  AccountSASPermissions,
  BlobClient,
  type BlobServiceClient,
  ContainerSASPermissions,
  generateAccountSASQueryParameters,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { type Azurite, startAzurite } from '@embedpool/testkit/azurite-kit';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EmbedpoolError } from '../errors';
import type { Logger } from '../logger';
import { createBlobServiceClient, resolveBlobTarget } from './blob-client';
import { type JobVectorItem, type WriteJobVectorsOptions, writeJobVectors } from './blob-sink';
import { readNpy } from './npy-read';
import { PathTemplateError } from './path-template';

// Short retries so a dead store fails in well under a second per blob.
const CLIENT_RETRY = { maxTries: 2, tryTimeoutMs: 2_000, retryDelayMs: 50, maxRetryDelayMs: 100 };
const SINK_RETRY = { attempts: 2, backoffMs: 50, maxBackoffMs: 100, operationTimeoutMs: 3_000 };
const CONTAINER = 'vectors';
const DIM = 16;

function vector(seed: number, dim = DIM): Float32Array {
  const v = new Float32Array(dim);
  for (let i = 0; i < dim; i++) v[i] = Math.sin(seed * 7.31 + i * 0.77) * (1 + seed) * 1e-3 * 10 ** (i % 5);
  return v;
}

function items(n: number, failed: number[] = [], offset = 0): JobVectorItem[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `img-${i}.png`,
    vector: failed.includes(i) ? null : vector(i + offset),
  }));
}

describe('writeJobVectors against Azurite', () => {
  let az: Azurite;
  let client: BlobServiceClient;

  beforeAll(async () => {
    az = await startAzurite();
    client = createBlobServiceClient(
      { kind: 'connection-string', connectionString: az.connectionString },
      { retry: CLIENT_RETRY },
    );
    await client.getContainerClient(CONTAINER).create();
  });
  afterAll(async () => {
    await az?.dispose();
  });

  const job = (over: Partial<WriteJobVectorsOptions> = {}): WriteJobVectorsOptions => ({
    client,
    container: CONTAINER,
    pathTemplate: 'embeddings/{date}/{jobId}',
    jobId: `job-${randomUUID()}`,
    jobDate: new Date('2025-01-31T12:00:00Z'),
    items: items(5, [1, 3]),
    model: 'facebook/dinov2-small',
    dim: DIM,
    formats: { jsonl: true, npy: true },
    retry: SINK_RETRY,
    ...over,
  });

  const download = async (name: string, container = CONTAINER) =>
    client.getContainerClient(container).getBlockBlobClient(name).downloadToBuffer();

  /** name -> etag + last-modified of every blob under a prefix. */
  const snapshot = async (prefix: string, container = CONTAINER) => {
    const out: Record<string, string> = {};
    for await (const b of client.getContainerClient(container).listBlobsFlat({ prefix })) {
      out[b.name] = `${b.properties.etag} ${b.properties.lastModified.toISOString()}`;
    }
    return out;
  };

  it('writes JSONL, NPY and ids that read back exactly; failed items are omitted', async () => {
    const opts = job();
    const res = await writeJobVectors(opts);
    const base = `embeddings/2025-01-31/${opts.jobId}`;
    expect(res.basePath).toBe(base);
    expect(res.count).toBe(3);
    expect(res.failed).toBe(2);
    expect(res.failedIds).toEqual(['img-1.png', 'img-3.png']);
    expect(res.alreadyComplete).toBe(false);
    expect(res.blobs.map((b) => [b.kind, b.name, b.outcome])).toEqual([
      ['jsonl', `${base}.jsonl`, 'written'],
      ['npy', `${base}.npy`, 'written'],
      ['ids', `${base}.ids.json`, 'written'],
      ['manifest', `${base}.manifest.json`, 'written'],
    ]);
    expect(res.jsonl.url).toBe(`${az.blobEndpoint}/${CONTAINER}/${base}.jsonl`);
    expect(Object.keys(await snapshot(`${base}`)).sort()).toEqual(res.blobs.map((b) => b.name).sort());

    const expected = opts.items.filter((i) => i.vector !== null);
    const lines = (await download(`${base}.jsonl`)).toString('utf8').split('\n');
    expect(lines.pop()).toBe('');
    const parsed = lines.map((l) => JSON.parse(l) as { id: string; image_features: number[] });
    expect(parsed.map((p) => p.id)).toEqual(expected.map((e) => e.id));
    for (const [i, p] of parsed.entries()) {
      expect(Object.keys(p)).toEqual(['id', 'image_features']);
      // Bit-exact: each number is the float32 itself.
      expect(Float32Array.from(p.image_features)).toEqual(expected[i]!.vector);
      expect(p.image_features).toEqual(Array.from(expected[i]!.vector!));
    }

    const npy = readNpy(await download(`${base}.npy`));
    expect(npy.shape).toEqual([3, DIM]);
    expect(npy.dataOffset % 64).toBe(0);
    expect(npy.data).toEqual(Float32Array.from(expected.flatMap((e) => Array.from(e.vector!))));
    expect(JSON.parse((await download(`${base}.ids.json`)).toString())).toEqual(expected.map((e) => e.id));

    const manifestBody = await download(`${base}.manifest.json`);
    const manifest = JSON.parse(manifestBody.toString());
    expect(manifest).toMatchObject({
      format: 'embedpool.job-vectors',
      jobId: opts.jobId,
      model: 'facebook/dinov2-small',
      dim: DIM,
      count: 3,
      failed: 2,
      failedIds: ['img-1.png', 'img-3.png'],
    });
    for (const b of res.blobs.filter((x) => x.kind !== 'manifest')) {
      const body = await download(b.name);
      const md5 = createHash('md5').update(body).digest('base64');
      expect(manifest.files[b.kind]).toEqual({ name: b.name, bytes: body.length, md5 });
      const props = await client.getContainerClient(CONTAINER).getBlockBlobClient(b.name).getProperties();
      expect(Buffer.from(props.contentMD5!).toString('base64')).toBe(md5);
    }
  });

  it('a retried job leaves exactly one unchanged copy of each blob', async () => {
    const opts = job();
    const first = await writeJobVectors(opts);
    const before = await snapshot('embeddings/');
    const again = await writeJobVectors(opts);
    expect(again.alreadyComplete).toBe(true);
    expect(again.blobs.every((b) => b.outcome === 'existing')).toBe(true);
    expect(again.blobs.map((b) => [b.name, b.etag, b.md5])).toEqual(
      first.blobs.map((b) => [b.name, b.etag, b.md5]),
    );
    expect(await snapshot('embeddings/')).toEqual(before);
  });

  it('a retry after a crashed attempt finishes the set without touching complete blobs', async () => {
    const opts = job();
    const first = await writeJobVectors(opts);
    const container = client.getContainerClient(CONTAINER);
    // As if the first attempt died after writing the JSONL only.
    await container.getBlockBlobClient(first.npy!.name).delete();
    await container.getBlockBlobClient(first.manifest.name).delete();
    const jsonlBefore = await snapshot(first.jsonl.name);
    const retry = await writeJobVectors(opts);
    expect(retry.alreadyComplete).toBe(false);
    expect(Object.fromEntries(retry.blobs.map((b) => [b.kind, b.outcome]))).toEqual({
      jsonl: 'existing',
      ids: 'existing',
      npy: 'written',
      manifest: 'written',
    });
    expect(await snapshot(first.jsonl.name)).toEqual(jsonlBefore);
    expect(retry.blobs.map((b) => b.md5)).toEqual(first.blobs.map((b) => b.md5));
    expect(Object.keys(await snapshot(first.basePath))).toHaveLength(4);
  });

  it('two concurrent attempts of one job: conditional writes leave one copy each', async () => {
    const opts = job({ formats: { jsonl: true, npy: true } });
    const [a, b] = await Promise.all([writeJobVectors(opts), writeJobVectors(opts)]);
    for (const [i, blob] of a.blobs.entries()) {
      expect(blob.md5).toBe(b.blobs[i]!.md5);
      // Exactly one attempt created each blob; the other found it (by its HEAD, or by a 409 on upload).
      expect([blob.outcome, b.blobs[i]!.outcome].sort()).toEqual(['existing', 'written']);
    }
    expect(Object.keys(await snapshot(a.basePath))).toHaveLength(4);
  });

  it('an upload whose earlier success went unseen (409 BlobAlreadyExists) counts as done', async () => {
    const opts = job();
    const first = await writeJobVectors(opts);
    await client.getContainerClient(CONTAINER).getBlockBlobClient(first.manifest.name).delete();
    // Every first look at a blob misses, as if the blobs appeared between our check and our upload.
    const real = BlobClient.prototype.getProperties;
    const looked = new Set<string>();
    const spy = vi.spyOn(BlobClient.prototype, 'getProperties').mockImplementation(function (
      this: BlobClient,
      o,
    ) {
      if (looked.has(this.name)) return real.call(this, o);
      looked.add(this.name);
      return Promise.reject(Object.assign(new Error('not found'), { statusCode: 404, code: 'BlobNotFound' }));
    });
    try {
      const retry = await writeJobVectors(opts);
      expect(retry.blobs.map((b) => [b.kind, b.outcome])).toEqual([
        ['jsonl', 'existing'],
        ['npy', 'existing'],
        ['ids', 'existing'],
        ['manifest', 'written'],
      ]);
      expect(retry.blobs.slice(0, 3).map((b) => b.etag)).toEqual(first.blobs.slice(0, 3).map((b) => b.etag));
    } finally {
      spy.mockRestore();
    }
  });

  it('stages large blobs in blocks and commits them conditionally', async () => {
    const opts = job({
      items: items(40),
      upload: { maxSingleShotBytes: 1024, blockBytes: 1024, concurrency: 3 },
    });
    const res = await writeJobVectors(opts);
    expect(res.jsonl.bytes).toBeGreaterThan(4 * 1024);
    const blocks = await client
      .getContainerClient(CONTAINER)
      .getBlockBlobClient(res.jsonl.name)
      .getBlockList('committed');
    expect(blocks.committedBlocks?.length).toBeGreaterThan(4);
    const lines = (await download(res.jsonl.name)).toString().trim().split('\n');
    expect(lines).toHaveLength(40);
    expect(readNpy(await download(res.npy!.name)).shape).toEqual([40, DIM]);
    const again = await writeJobVectors(opts);
    expect(again.blobs.map((b) => b.etag)).toEqual(res.blobs.map((b) => b.etag));
  });

  it('different bytes for the same job: a conflict error, nothing overwritten', async () => {
    const opts = job();
    const first = await writeJobVectors(opts);
    const before = await snapshot(first.basePath);
    const changed = { ...opts, items: items(5, [1, 3], 100) };

    const err = await writeJobVectors(changed).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmbedpoolError);
    expect((err as EmbedpoolError).details).toMatchObject({
      storageCode: 'BlobAlreadyExists',
      reason: 'conflict',
    });
    expect((err as Error).message).toContain('BlobAlreadyExists');
    expect(await snapshot(first.basePath)).toEqual(before);

    // A complete earlier set can be accepted as the job's output instead.
    const kept = await writeJobVectors({ ...changed, onExisting: 'accept-complete' });
    expect(kept.alreadyComplete).toBe(true);
    expect(kept.blobs.map((b) => [b.name, b.md5, b.outcome])).toEqual(
      first.blobs.map((b) => [b.name, b.md5, 'existing']),
    );
    expect(await snapshot(first.basePath)).toEqual(before);

    // Without a manifest (a crashed attempt), a differing data blob is still a conflict, even when accepting.
    await client.getContainerClient(CONTAINER).getBlockBlobClient(first.manifest.name).delete();
    const partial = await writeJobVectors({ ...changed, onExisting: 'accept-complete' }).catch(
      (e: unknown) => e,
    );
    expect((partial as EmbedpoolError).details).toMatchObject({ storageCode: 'BlobAlreadyExists' });
    expect(Object.keys(await snapshot(first.basePath))).toHaveLength(3);
  });

  it('an all-failed job writes empty outputs and its manifest', async () => {
    const res = await writeJobVectors(job({ items: items(2, [0, 1]) }));
    expect(res.count).toBe(0);
    expect(res.jsonl.bytes).toBe(0);
    expect((await download(res.jsonl.name)).length).toBe(0);
    expect(readNpy(await download(res.npy!.name)).shape).toEqual([0, DIM]);
    expect(JSON.parse((await download(res.ids!.name)).toString())).toEqual([]);
    expect(res.failedIds).toEqual(['img-0.png', 'img-1.png']);
  });

  it('refuses unsafe or non-deterministic layouts and bad items before any request', async () => {
    for (const pathTemplate of ['embeddings/{date}', 'e/{jobId}/{itemId}', '../{jobId}', 'e/{jobid}']) {
      await expect(writeJobVectors(job({ pathTemplate }))).rejects.toBeInstanceOf(PathTemplateError);
    }
    await expect(writeJobVectors(job({ jobDate: undefined }))).rejects.toMatchObject({
      reason: 'missing-value',
    });
    await expect(writeJobVectors(job({ jobId: 'a/b' }))).rejects.toMatchObject({ reason: 'bad-value' });
    await expect(writeJobVectors(job({ items: [...items(2), ...items(1)] }))).rejects.toMatchObject({
      code: 'BAD_REQUEST',
    });
    await expect(
      writeJobVectors(job({ items: [{ id: 'x', vector: new Float32Array(DIM - 1) }] })),
    ).rejects.toMatchObject({ code: 'INTERNAL' });
    await expect(
      writeJobVectors(job({ items: [{ id: 'x', vector: new Float32Array(DIM).fill(Number.NaN) }] })),
    ).rejects.toMatchObject({ code: 'INFERENCE_FAILED' });
    await expect(writeJobVectors(job({ container: 'Bad_Name' }))).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
    // Without {date}, no jobDate is needed.
    const res = await writeJobVectors(job({ pathTemplate: 'flat/{jobId}', jobDate: undefined }));
    expect(res.basePath).toMatch(/^flat\/job-/);
  });

  it('a missing container is a permanent CONFIG_INVALID carrying ContainerNotFound', async () => {
    const err = await writeJobVectors(job({ container: 'does-not-exist' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmbedpoolError);
    expect((err as EmbedpoolError).code).toBe('CONFIG_INVALID');
    expect((err as EmbedpoolError).details?.storageCode).toBe('ContainerNotFound');
  });

  it('writes through a container SAS URL and an account SAS URL', async () => {
    const cred = new StorageSharedKeyCredential(az.accountName, az.accountKey);
    const expiresOn = new Date(Date.now() + 3_600_000);
    const containerSas = generateBlobSASQueryParameters(
      { containerName: CONTAINER, permissions: ContainerSASPermissions.parse('racw'), expiresOn },
      cred,
    ).toString();
    const target = resolveBlobTarget(
      { kind: 'sas-url', url: `${az.blobEndpoint}/${CONTAINER}?${containerSas}` },
      { retry: CLIENT_RETRY },
    );
    expect(target.container).toBe(CONTAINER);
    const viaContainer = job({ client: target.client, container: target.container! });
    const res = await writeJobVectors(viaContainer);
    expect(res.jsonl.url).not.toContain('sig=');
    expect(Object.keys(await snapshot(res.basePath))).toHaveLength(4);
    // Idempotent through the SAS too (it needs read permission for the checks).
    expect((await writeJobVectors(viaContainer)).alreadyComplete).toBe(true);

    const accountSas = generateAccountSASQueryParameters(
      {
        permissions: AccountSASPermissions.parse('rwacl'),
        services: 'b',
        resourceTypes: 'sco',
        expiresOn,
      },
      cred,
    ).toString();
    const account = resolveBlobTarget({ kind: 'sas-url', url: `${az.blobEndpoint}?${accountSas}` });
    expect(account.container).toBeUndefined();
    const viaAccount = await writeJobVectors(
      job({ client: account.client, container: 'sas-created', createContainer: true }),
    );
    expect((await download(viaAccount.jsonl.name, 'sas-created')).length).toBe(viaAccount.jsonl.bytes);
  });

  // Last two: they stop and restart the emulator.
  it('a write that meets an outage completes once Azurite is back (bounded retry)', async () => {
    const warnings: { err: string }[] = [];
    const logger = { warn: (o: { err: string }) => warnings.push(o), debug: () => {} } as unknown as Logger;
    const opts = job({
      logger,
      // About 10 s of retries: ample for a restart (1-2 s), still bounded.
      retry: { attempts: 40, backoffMs: 100, maxBackoffMs: 250, operationTimeoutMs: 3_000 },
    });
    await az.stop();
    const pending = writeJobVectors(opts);
    await az.restart();
    const res = await pending;
    expect(warnings.length).toBeGreaterThan(0);
    expect(warnings[0]!.err).toContain('ECONNREFUSED');
    expect(res.blobs.every((b) => b.outcome === 'written')).toBe(true);
    expect(Object.keys(await snapshot(res.basePath))).toHaveLength(4);
  });

  it('Azurite stopped: fails fast with the storage code; restarted: the same write succeeds', async () => {
    const earlier = await writeJobVectors(job());
    const opts = job();
    await az.stop();
    const started = Date.now();
    const err = await writeJobVectors(opts).catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeLessThan(5_000);
    expect(err).toBeInstanceOf(EmbedpoolError);
    const e = err as EmbedpoolError;
    expect(e.code).toBe('UNAVAILABLE');
    expect(e.permanent).toBe(false);
    expect(e.details).toMatchObject({ storageCode: 'ECONNREFUSED', transient: true, attempts: 2 });
    expect(e.message).toContain('ECONNREFUSED');

    await az.restart();
    const res = await writeJobVectors(opts);
    expect(res.alreadyComplete).toBe(false);
    expect(res.blobs.every((b) => b.outcome === 'written')).toBe(true);
    // Data written before the outage survived the restart.
    const again = await writeJobVectors({ ...job(), jobId: earlier.basePath.split('/').pop()! });
    expect(again.alreadyComplete).toBe(true);
  });
});
