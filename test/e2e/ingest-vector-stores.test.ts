/**
 * The recipes of docs/ingestion.md that this machine can run for real: a shard written by the service is
 * read as Arrow by arrow-rs (parquet-wasm, the reader of DataFusion/Polars-style tools), where `vector` is the
 * fixed-size list that Arrow-native stores (LanceDB, FixedShapeTensor) look for, then loaded as it is into
 * pgvector (PGlite with its bundled `vector` extension); each nearest-neighbour query for an image's own
 * vector returns that image first.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { BlobServiceClient } from '@azure/storage-blob';
import { PGlite } from '@electric-sql/pglite';
import { vector as pgvector } from '@electric-sql/pglite/vector';
import { blobRowId, ingestSettingsFrom } from '@embedpool/core/ingest';
import { FixedSizeList, type Table, tableFromIPC } from 'apache-arrow';
import initParquet, { readParquet } from 'parquet-wasm/esm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type IngestEvents,
  type IngestFixture,
  type IngestStack,
  makeBlobs,
  postIngestion,
  startIngestFixture,
  type TestBlob,
  upload,
} from './ingest-support';

const require = createRequire(import.meta.url);
const SOURCE = 'stores-src';
const DIM = 192; // the parity fixture model's

describe('the Parquet output loads as it is into vector stores', () => {
  let fx: IngestFixture;
  let blob: BlobServiceClient;
  let stack: IngestStack;
  let events: IngestEvents;
  let blobs: TestBlob[];
  /** Every shard of the output, as arrow-rs reads it. */
  let tables: Table[];

  beforeAll(async () => {
    await initParquet({
      module_or_path: readFileSync(require.resolve('parquet-wasm/esm/parquet_wasm_bg.wasm')),
    });
    blobs = await makeBlobs(12);
    const env = { INGEST_CHUNK_SIZE: '5' };
    fx = await startIngestFixture({
      env,
      settings: ingestSettingsFrom(env),
      seed: (b) => upload(b.getContainerClient(SOURCE), blobs),
    });
    ({ blob, stack, events } = fx);

    const res = await postIngestion(stack.url, {
      source: { container: SOURCE },
      output: { container: 'vectors', prefix: 'stores' },
    });
    expect((await events.final(stack.url, res.json.id)).state).toBe('completed');
    const out = blob.getContainerClient('vectors');
    const manifest = JSON.parse(
      (await out.getBlobClient('stores/_manifest.json').downloadToBuffer()).toString(),
    );
    expect(manifest.shards.length).toBe(3);
    tables = [];
    for (const s of manifest.shards as { name: string }[]) {
      const bytes = await out.getBlobClient(`stores/${s.name}`).downloadToBuffer();
      tables.push(tableFromIPC(readParquet(new Uint8Array(bytes)).intoIPCStream()));
    }
  });
  afterAll(async () => {
    await fx?.close();
  });

  const rows = () =>
    tables.flatMap((t) =>
      t.toArray().map((r) => ({
        id: String(r.id),
        name: String(r.blob_name),
        vector: Array.from(r.vector as Iterable<number>),
      })),
    );

  it('arrow-rs reads vector as fixed_size_list<float32>[dim] and a UUIDv5 id per blob', () => {
    for (const t of tables) {
      const vector = t.schema.fields.find((f) => f.name === 'vector')!;
      expect(vector.type).toBeInstanceOf(FixedSizeList);
      expect(String(vector.type)).toBe(`FixedSizeList[${DIM}]<Float32>`);
      expect(vector.nullable).toBe(false);
    }
    const all = rows();
    expect(all.map((r) => r.name).sort()).toEqual(blobs.map((b) => b.name).sort());
    for (const r of all) expect(r.id).toBe(blobRowId(SOURCE, r.name));
  });

  it('pgvector (PGlite): the rows load into a vector(dim) column keyed by id; KNN returns the image first', async () => {
    const pg = await PGlite.create({ extensions: { vector: pgvector } });
    try {
      await pg.exec('CREATE EXTENSION IF NOT EXISTS vector');
      await pg.exec(
        `CREATE TABLE images (id uuid PRIMARY KEY, blob_name text NOT NULL, embedding vector(${DIM}) NOT NULL)`,
      );
      const all = rows();
      for (const r of all) {
        // Upsert by id: the same blob re-embedded in a later run replaces its row.
        await pg.query(
          'INSERT INTO images (id, blob_name, embedding) VALUES ($1, $2, $3) ' +
            'ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding',
          [r.id, r.name, JSON.stringify(r.vector)],
        );
      }
      expect((await pg.query<{ n: number }>('SELECT count(*)::int AS n FROM images')).rows[0]!.n).toBe(
        blobs.length,
      );
      for (const r of all) {
        const hit = await pg.query<{ blob_name: string; d: number }>(
          'SELECT blob_name, embedding <=> $1 AS d FROM images ORDER BY embedding <=> $1 LIMIT 3',
          [JSON.stringify(r.vector)],
        );
        expect(hit.rows[0]!.blob_name, r.name).toBe(r.name);
        expect(hit.rows[0]!.d).toBeLessThan(1e-5);
      }
    } finally {
      await pg.close();
    }
  });
});
