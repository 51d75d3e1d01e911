/**
 * Manifest input (issue 14): an ingestion whose source is a JSON lines or CSV blob listing blob names and
 * http(s) URLs, the URLs fetched through the workers' fetcher and its address rules.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BlobServiceClient } from '@azure/storage-blob';
import { blobRowId, ingestSettingsFrom } from '@embedpool/core/ingest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  getJson,
  type IngestEvents,
  type IngestFixture,
  type IngestStack,
  makeBlobs,
  postIngestion,
  readOutput,
  startIngestFixture,
  type TestBlob,
  upload,
} from './ingest-support';

const SOURCE = 'manifest-src';

describe('ingestion from a manifest of blob names and URLs (Azurite, Redis, fixture model)', () => {
  let fx: IngestFixture;
  let blob: BlobServiceClient;
  let stack: IngestStack;
  let events: IngestEvents;
  let blobs: TestBlob[];
  let served: TestBlob[];
  let files: Server;
  let base: string;

  beforeAll(async () => {
    blobs = await makeBlobs(4);
    served = await makeBlobs(2, { first: 10 });
    files = createServer((req, res) => {
      const b = served.find((x) => `/${x.name}` === req.url);
      if (!b) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(b.body);
    });
    files.listen(0, '127.0.0.1');
    await once(files, 'listening');
    base = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
    const env = { INGEST_CHUNK_SIZE: '3' };
    // Loopback URLs are refused unless allowed: the images are served from this process.
    fx = await startIngestFixture({
      env: { FETCH_ALLOW: '127.0.0.0/8', ...env },
      settings: ingestSettingsFrom(env),
      seed: (b) => upload(b.getContainerClient(SOURCE), blobs),
    });
    ({ blob, stack, events } = fx);
  });
  afterAll(async () => {
    await fx?.close();
    files?.closeAllConnections();
    await new Promise((r) => files?.close(r));
  });

  async function manifest(name: string, text: string): Promise<void> {
    await blob.getContainerClient('inputs').createIfNotExists();
    await blob.getContainerClient('inputs').getBlockBlobClient(name).uploadData(Buffer.from(text));
  }

  it('JSON lines: blob names and URLs are embedded; a missing blob, a 404 URL and a bad line are failures', async () => {
    const lines = [
      JSON.stringify(blobs[0]!.name),
      JSON.stringify({ blob: blobs[1]!.name }),
      JSON.stringify({ url: `${base}/${served[0]!.name}` }),
      JSON.stringify(`${base}/${served[1]!.name}`),
      JSON.stringify({ blob_name: blobs[2]!.name }),
      JSON.stringify('no/such/blob.jpg'),
      JSON.stringify({ url: `${base}/missing.jpg` }),
      JSON.stringify({ nothing: 1 }),
    ];
    await manifest('list.jsonl', `${lines.join('\n')}\n`);
    const res = await postIngestion(stack.url, {
      source: { container: SOURCE, manifest: { container: 'inputs', name: 'list.jsonl' } },
      output: { container: 'vectors', prefix: 'from-jsonl' },
    });
    expect(res.status, JSON.stringify(res.json)).toBe(202);
    const v = await events.final(stack.url, res.json.id);
    expect(v.state).toBe('partially_failed');
    expect(v.counts).toMatchObject({ discovered: 8, done: 5, failed: 3, queued: 0, carriedFailures: 0 });

    const failures = (await getJson(`${stack.url}/v1/ingestions/${res.json.id}/failures`)).items as {
      blob: string;
      error: { code: string };
    }[];
    const codes = Object.fromEntries(failures.map((f) => [f.blob.replace(/@\d+:.*/, '@line'), f.error.code]));
    expect(codes).toEqual({
      'no/such/blob.jpg': 'STORAGE_BlobNotFound',
      [`${base}/missing.jpg`]: 'URL_HTTP_STATUS',
      'inputs/list.jsonl@line': 'MANIFEST_LINE_INVALID',
    });

    const out = await readOutput(blob.getContainerClient('vectors'), 'from-jsonl');
    const rows = [...out.shards.values()].flat();
    const expected = [
      blobs[0]!.name,
      blobs[1]!.name,
      blobs[2]!.name,
      `${base}/${served[0]!.name}`,
      `${base}/${served[1]!.name}`,
    ];
    expect(rows.map((r) => r.name).sort()).toEqual(expected.sort());
    for (const r of rows) {
      expect(r.id).toBe(blobRowId(SOURCE, r.name));
      expect(r.vector).toHaveLength(192);
    }
    // The index has one entry per name, in name order, whatever the manifest's order was.
    expect(out.index.filter((e) => e.shard !== undefined).map((e) => e.name)).toEqual(
      [...expected].sort((a, b) => (a < b ? -1 : 1)),
    );
  });

  it('CSV with a header: the url column is used, other columns are ignored', async () => {
    const csv = [
      'label,url',
      `cat,${base}/${served[0]!.name}`,
      `"a, quoted label",${blobs[3]!.name}`,
      '',
    ].join('\r\n');
    await manifest('list.csv', csv);
    const res = await postIngestion(stack.url, {
      source: { container: SOURCE, manifest: { container: 'inputs', name: 'list.csv' } },
      output: { container: 'vectors', prefix: 'from-csv' },
    });
    const v = await events.final(stack.url, res.json.id);
    expect(v.state).toBe('completed');
    expect(v.counts).toMatchObject({ discovered: 2, done: 2, failed: 0 });
    const out = await readOutput(blob.getContainerClient('vectors'), 'from-csv');
    expect(
      [...out.shards.values()]
        .flat()
        .map((r) => r.name)
        .sort(),
    ).toEqual([`${base}/${served[0]!.name}`, blobs[3]!.name].sort());
  });

  it('a manifest that is missing or not .jsonl/.csv is a 400 naming it', async () => {
    const missing = await postIngestion(stack.url, {
      source: { container: SOURCE, manifest: { container: 'inputs', name: 'nope.jsonl' } },
      output: { container: 'vectors', prefix: 'x' },
    });
    expect(missing.status).toBe(400);
    expect(missing.json.error.message).toContain('inputs/nope.jsonl does not exist');
    const txt = await postIngestion(stack.url, {
      source: { container: SOURCE, manifest: { name: 'list.txt' } },
      output: { container: 'vectors', prefix: 'x' },
    });
    expect(txt.status).toBe(400);
    expect(txt.json.error.message).toMatch(
      /source\.manifest\.name: a manifest is a \.jsonl, \.ndjson or \.csv/,
    );
  });
});
