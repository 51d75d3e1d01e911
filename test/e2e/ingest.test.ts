import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import type { BlobServiceClient } from '@azure/storage-blob';
import type { IngestionView } from '@embedpool/core/ingest';
import { ingestSettingsFrom, parquetShardMetadata } from '@embedpool/core/ingest';
import { cosine, REPO_ROOT } from '@embedpool/testkit';
import { parquetMetadata } from 'hyparquet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  embedAlone,
  getJson,
  type IngestEvents,
  type IngestFixture,
  type IngestStack,
  liveRows,
  makeBlobs,
  makeImage,
  postIngestion,
  readOutput,
  startIngestFixture,
  type TestBlob,
  upload,
} from './ingest-support';

const SOURCE = 'photos';

function expectCountsAddUp(v: IngestionView) {
  const c = v.counts;
  expect(c.discovered).toBe(c.skipped + c.queued + c.done + c.failed + c.cancelled);
}

describe('bulk ingestion of an Azure Blob container (Azurite, Redis, fixture model)', () => {
  let fx: IngestFixture;
  let blob: BlobServiceClient;
  let stack: IngestStack;
  let events: IngestEvents;
  let blobs: TestBlob[];
  let refs: Map<string, Float32Array>;
  const runs: string[] = [];
  /** Blobs added to the source by a test, for the tests after it. */
  const added: TestBlob[] = [];

  beforeAll(async () => {
    blobs = await makeBlobs(600, { corrupt: 5 });
    refs = await embedAlone(blobs);
    // Through the config (as the wired worker reads them) and as overrides (for startIngestWorker here).
    const ingestEnv = {
      INGEST_CHUNK_SIZE: '64',
      INGEST_LIST_PAGE_SIZE: '200',
      INGEST_MAX_QUEUED_CHUNKS: '4',
    };
    fx = await startIngestFixture({
      env: { LOG_LEVEL: 'warn', ...ingestEnv },
      settings: ingestSettingsFrom(ingestEnv),
      seed: (b) => upload(b.getContainerClient(SOURCE), blobs),
    });
    ({ blob, stack, events } = fx);
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('ingests 600 images and 5 corrupt blobs: one matching row per good blob, the 5 as failures', async () => {
    const res = await postIngestion(stack.url, {
      source: { container: SOURCE },
      output: { container: 'vectors', prefix: 'dinov2/v1' },
    });
    expect(res.status).toBe(202);
    expect(res.json).toMatchObject({ state: 'queued', statusUrl: `/v1/ingestions/${res.json.id}` });
    runs.push(res.json.id);

    const final = await events.final(stack.url, res.json.id);
    expect(final.state).toBe('partially_failed');
    expect(final.counts).toMatchObject({ discovered: 605, done: 600, failed: 5, skipped: 0, queued: 0 });
    expectCountsAddUp(final);
    expect(final.listing).toMatchObject({ done: true, chunksPlanned: 10, chunksDone: 10 });
    expect(final.output.manifest).toBe('dinov2/v1/_manifest.json');

    const failures = await getJson(`${stack.url}/v1/ingestions/${res.json.id}/failures?limit=3`);
    const rest = await getJson(`${stack.url}/v1/ingestions/${res.json.id}/failures?cursor=${failures.next}`);
    const failed = [...failures.items, ...rest.items];
    expect(failed.map((f: { blob: string }) => f.blob).sort()).toEqual(
      blobs
        .filter((b) => !b.good)
        .map((b) => b.name)
        .sort(),
    );
    expect(rest.next).toBeUndefined();
    for (const f of failed) {
      expect(f.error.code).toMatch(/^IMAGE_(EMPTY|DECODE_FAILED|UNSUPPORTED_FORMAT)$/);
      expect(f.permanent).toBe(true);
    }

    const out = await readOutput(blob.getContainerClient('vectors'), 'dinov2/v1');
    // One shard per chunk that had rows, named after it, and nothing else in shards/.
    expect(out.listedShards.sort()).toEqual(out.manifest.shards.map((s) => `dinov2/v1/${s.name}`).sort());
    const all = [...out.shards.values()].flat();
    expect(all).toHaveLength(600);
    expect(new Set(all.map((r) => r.name)).size).toBe(600);
    const byName = new Map(blobs.map((b) => [b.name, b]));
    for (const row of all) {
      const b = byName.get(row.name)!;
      expect(b.good).toBe(true);
      expect(row.size).toBe(b.body.length);
      expect(row.model).toBe('parity');
      expect(row.vector).toHaveLength(192);
      expect(cosine(row.vector, refs.get(row.name)!)).toBeGreaterThanOrEqual(0.999);
    }
    expect(out.manifest).toMatchObject({
      model: 'parity',
      dim: 192,
      shardFormat: 'parquet',
      counts: { rows: 600, liveRows: 600, supersededRows: 0 },
      index: { vectors: 600, failures: 5 },
    });
    expect(out.manifest.runs).toHaveLength(1);
    expect(out.manifest.runs[0]).toMatchObject({
      run: 1,
      ingestionId: res.json.id,
      state: 'partially_failed',
    });

    // Parquet as an Arrow reader sees it: vector is a LIST of FLOAT, and the file says model and dim.
    const first = out.manifest.shards[0]!;
    const bytes = await blob
      .getContainerClient('vectors')
      .getBlobClient(`dinov2/v1/${first.name}`)
      .downloadToBuffer();
    const schema = parquetMetadata(
      bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer,
    ).schema;
    expect(schema.map((s) => [s.name, s.type, s.converted_type, s.repetition_type])).toEqual([
      ['schema', undefined, undefined, undefined],
      ['blob_name', 'BYTE_ARRAY', 'UTF8', 'REQUIRED'],
      ['etag', 'BYTE_ARRAY', 'UTF8', 'REQUIRED'],
      ['content_length', 'INT64', undefined, 'REQUIRED'],
      ['vector', undefined, 'LIST', 'REQUIRED'],
      ['list', undefined, undefined, 'REPEATED'],
      ['element', 'FLOAT', undefined, 'REQUIRED'],
      ['model_id', 'BYTE_ARRAY', 'UTF8', 'REQUIRED'],
      ['id', 'BYTE_ARRAY', 'UTF8', 'REQUIRED'],
    ]);
    expect(parquetShardMetadata(bytes)).toMatchObject({
      'embedpool.model': 'parity',
      'embedpool.dim': '192',
      'embedpool.schema_version': '2',
    });
  });

  it('runs again: nothing changed embeds nothing; 10 added and 3 overwritten embeds exactly those 13', async () => {
    const body = { source: { container: SOURCE }, output: { container: 'vectors', prefix: 'dinov2/v1' } };
    const second = await postIngestion(stack.url, body);
    runs.push(second.json.id);
    const v2 = await events.final(stack.url, second.json.id);
    expect(v2.counts).toMatchObject({
      discovered: 605,
      skipped: 600,
      done: 0,
      failed: 5,
      carriedFailures: 5,
    });
    expect(v2.listing.chunksPlanned).toBe(0);
    expectCountsAddUp(v2);

    added.push(...(await makeBlobs(10, { first: 600 })));
    const changed: TestBlob[] = [];
    for (const i of [3, 250, 599]) {
      const name = blobs[i]!.name;
      changed.push({ name, body: (await makeImage(i, 1)).body, good: true });
    }
    await upload(blob.getContainerClient(SOURCE), [...added, ...changed]);
    const newRefs = await embedAlone([...added, ...changed]);

    const third = await postIngestion(stack.url, body);
    runs.push(third.json.id);
    const v3 = await events.final(stack.url, third.json.id);
    expect(v3.counts).toMatchObject({
      discovered: 615,
      skipped: 597,
      done: 13,
      failed: 5,
      carriedFailures: 5,
    });
    expectCountsAddUp(v3);

    const out = await readOutput(blob.getContainerClient('vectors'), 'dinov2/v1');
    const run3 = out.manifest.runs.find((r) => r.ingestionId === third.json.id)!;
    const rows3 = run3.shards.flatMap((s) => out.shards.get(s)!);
    expect(rows3.map((r) => r.name).sort()).toEqual([...added, ...changed].map((b) => b.name).sort());
    expect(out.manifest.runs.map((r) => [r.run, r.counts.embedded, r.counts.skipped])).toEqual([
      [1, 600, 0],
      [2, 0, 600],
      [3, 13, 597],
    ]);
    // The 3 overwritten blobs' old rows are superseded, named, and the latest row wins.
    expect(run3.counts.supersededRows).toBe(3);
    expect(out.manifest.counts).toMatchObject({ rows: 613, liveRows: 610, supersededRows: 3 });
    const supersededList = (
      await blob
        .getContainerClient('vectors')
        .getBlobClient(`dinov2/v1/${run3.superseded![0]}`)
        .downloadToBuffer()
    )
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).blob_name);
    expect(supersededList.sort()).toEqual(changed.map((b) => b.name).sort());
    const live = liveRows(out);
    expect(live.size).toBe(610);
    for (const b of [...added, ...changed]) {
      expect(cosine(live.get(b.name)!.vector, newRefs.get(b.name)!)).toBeGreaterThanOrEqual(0.999);
    }
    expect(cosine(live.get(blobs[10]!.name)!.vector, refs.get(blobs[10]!.name)!)).toBeGreaterThanOrEqual(
      0.999,
    );
  });

  it('retry-failed re-queues only the failures', async () => {
    const id = runs[2]!;
    const res = await fetch(`${stack.url}/v1/ingestions/${id}/retry-failed`, { method: 'POST' });
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ requeued: 5, round: 1, state: 'running' });
    const v = await events.final(stack.url, id, 1);
    expect(v.state).toBe('partially_failed');
    expect(v.counts).toMatchObject({ done: 13, failed: 5, carriedFailures: 0 });
    expectCountsAddUp(v);
    const failures = await getJson(`${stack.url}/v1/ingestions/${id}/failures`);
    expect(failures.items).toHaveLength(5);
    expect(failures.items.every((f: { chunk: string }) => f.chunk.includes('-r1-c'))).toBe(true);
    const out = await readOutput(blob.getContainerClient('vectors'), 'dinov2/v1');
    expect(out.manifest.runs).toHaveLength(3);
    expect(out.manifest.runs[2]).toMatchObject({ rounds: 2 });
    expect(out.manifest.counts.rows).toBe(613);
  });

  it('writes JSON lines, takes a prefix and a glob, and refuses a second ingestion into a busy output', async () => {
    const body = {
      source: { container: SOURCE, prefix: 'photos/2024/', glob: '**/*.png' },
      output: { container: 'vectors', prefix: 'pngs', format: 'jsonl' },
    };
    const res = await postIngestion(stack.url, body);
    const busy = await postIngestion(stack.url, body);
    expect(busy.status).toBe(400);
    expect(busy.json.error.message).toContain(res.json.id);
    const v = await events.final(stack.url, res.json.id);
    const expected = [...blobs, ...added].filter(
      (b) => b.good && b.name.startsWith('photos/2024/') && b.name.endsWith('.png'),
    );
    expect(v.state).toBe('completed');
    expect(v.counts.done).toBe(expected.length);
    const out = await readOutput(blob.getContainerClient('vectors'), 'pngs');
    expect(out.manifest.shardFormat).toBe('jsonl');
    expect(out.manifest.shards.every((s) => s.name.endsWith('.jsonl'))).toBe(true);
    const rows = [...out.shards.values()].flat();
    expect(rows.map((r) => r.name).sort()).toEqual(expected.map((b) => b.name).sort());
    for (const r of rows) {
      // Overwritten by the previous test: compare with its first version only where it was not.
      const ref = refs.get(r.name)!;
      if (r.name !== blobs[250]!.name) expect(cosine(r.vector, ref)).toBeGreaterThanOrEqual(0.999);
    }
  });

  it('a cancelled run keeps what it finished; the next run into the output does only the rest', async () => {
    const body = {
      source: { container: SOURCE, prefix: 'scans/', glob: 'scans/img-0*' },
      output: { container: 'vectors', prefix: 'cancelled' },
    };
    const firstChunk = events.chunksCompleted(1);
    const res = await postIngestion(stack.url, body);
    await firstChunk;
    const del = await fetch(`${stack.url}/v1/ingestions/${res.json.id}`, { method: 'DELETE' });
    expect(del.status).toBe(202);
    const v1 = await events.final(stack.url, res.json.id);
    expect(v1.state).toBe('cancelled');
    expectCountsAddUp(v1);
    expect(v1.counts.done).toBeGreaterThan(0);
    expect((await fetch(`${stack.url}/v1/ingestions/${res.json.id}`, { method: 'DELETE' })).status).toBe(400);

    const again = await postIngestion(stack.url, body);
    const v2 = await events.final(stack.url, again.json.id);
    expect(v2.state).toBe('completed');
    expect(v2.counts.skipped).toBe(v1.counts.done);
    const scans = [...blobs, ...added]
      .filter((b) => b.good && b.name.startsWith('scans/'))
      .map((b) => b.name);
    expect(v1.counts.done + v2.counts.done).toBe(scans.length);
    const out = await readOutput(blob.getContainerClient('vectors'), 'cancelled');
    const names = [...out.shards.values()].flat().map((r) => r.name);
    expect(names.sort()).toEqual(scans.sort());
    expect(out.manifest.runs.map((r) => r.state)).toEqual(['cancelled', 'completed']);
  });

  it('validates requests and answers 404 for unknown ingestions', async () => {
    expect((await postIngestion(stack.url, { source: {}, output: {} })).status).toBe(400);
    const noContainer = await postIngestion(stack.url, {
      source: { container: 'nope' },
      output: { container: 'out' },
    });
    expect(noContainer.status).toBe(400);
    expect(noContainer.json.error.message).toContain('does not exist');
    const badGlob = await postIngestion(stack.url, {
      source: { container: SOURCE, glob: '[' },
      output: { container: 'vectors', prefix: 'x' },
    });
    expect([202, 400]).toContain(badGlob.status);
    if (badGlob.status === 202) await events.final(stack.url, badGlob.json.id);
    expect((await fetch(`${stack.url}/v1/ingestions/ing-000000000-00000000`)).status).toBe(404);
    const list = await getJson(`${stack.url}/v1/ingestions?limit=2`);
    expect(list.items).toHaveLength(2);
    const more = await getJson(`${stack.url}/v1/ingestions?cursor=${list.next}`);
    const ids = [...list.items, ...more.items].map((i: { id: string }) => i.id);
    for (const id of runs) expect(ids).toContain(id);
  });

  it('embedpool ingest --watch prints progress lines when not on a terminal and exits 0 at completion', async () => {
    const child = spawn(
      process.execPath,
      [
        join(REPO_ROOT, 'bin/embedpool.js'),
        'ingest',
        '--container',
        SOURCE,
        '--prefix',
        'misc/',
        '--glob',
        'misc/**/img-000*',
        '--output',
        'vectors/cli/run',
        '--url',
        stack.url,
        '--watch',
        '--interval',
        '200',
      ],
      {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code, stderr).toBe(0);
    const lines = stderr.trim().split('\n');
    expect(lines[0]).toMatch(/^(ing-[0-9a-z-]+):/);
    const id = /^(ing-[0-9a-z-]+):/.exec(lines[0]!)![1]!;
    const progress = lines.filter((l) => l.startsWith(`${id} `));
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.at(-1)).toMatch(
      new RegExp(`^${id} completed: 25/25 done \\(100\\.0%\\), 0 failed, 0 skipped`),
    );
    for (const l of progress.slice(0, -1))
      expect(l).toMatch(/^ing-\S+ (queued|running|finalizing): \d+\/\d+\+? done.*img\/s, ETA /);
    expect(stdout).toMatch(
      new RegExp(
        `^${id} completed: 25 embedded, 0 failed, 0 unchanged, 0 cancelled in \\d+s; manifest vectors/cli/run/_manifest.json\\n$`,
      ),
    );
  });
});
