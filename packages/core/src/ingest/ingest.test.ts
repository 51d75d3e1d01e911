import { FixedSizeList, tableFromIPC } from 'apache-arrow';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { describe, expect, it } from 'vitest';
import { blobFilter, validateGlob } from './filter';
import { compareNames, decodeIndexLine, encodeIndexLine } from './index-file';
import { chunkId, newIngestionId, OutputLayout } from './names';
import { blobRowId, uuidV5 } from './row-id';
import { createIngestionRequestSchema, type IngestionRecord, ingestionRecordSchema } from './schemas';
import { ingestionView } from './service';
import { ingestSettingsFrom } from './settings';
import {
  decodeShard,
  encodeShard,
  parquetShardMetadata,
  SHARD_COLUMNS,
  SHARD_SCHEMA_VERSION,
} from './shard-format';

describe('blob name order', () => {
  it('is code point (UTF-8 byte) order, not UTF-16 code unit order', () => {
    const names = ['b', 'a/b', 'a', 'A', 'a-b', 'a/', 'é', '\uFF21', '😀', 'z', 'a b', ''];
    const byBytes = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect([...names].sort(compareNames)).toEqual(byBytes);
    // Plain JS order puts the emoji (a surrogate pair) before U+FF21; UTF-8 puts it after.
    expect('😀' < '\uFF21').toBe(true);
    expect(compareNames('😀', '\uFF21')).toBeGreaterThan(0);
  });

  it('agrees with Buffer.compare on random strings', () => {
    const alphabet = ['a', 'Z', '/', '-', 'é', '中', '\uFFFD', '😀', '𝄞', '\u0000'];
    let seed = 42;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 2000; i++) {
      const s = () => Array.from({ length: rnd() % 5 }, () => alphabet[rnd() % alphabet.length]).join('');
      const a = s();
      const b = s();
      expect(Math.sign(compareNames(a, b))).toBe(Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
    }
  });
});

describe('index lines', () => {
  it('round-trip rows and failures, whatever the name', () => {
    const entries = [
      { name: 'photos/a.jpg', etag: '0x8DC1', shard: 'ing-x-c00000001' },
      { name: 'we"ird\\name\nwith newline.png', etag: '0x1', failure: 'IMAGE_DECODE_FAILED' },
      { name: 'ünï/😀.webp', etag: '', shard: 'c' },
    ];
    for (const e of entries) {
      const line = encodeIndexLine(e);
      expect(line.endsWith('\n')).toBe(true);
      expect(line.slice(0, -1)).not.toContain('\n');
      expect(decodeIndexLine(line.slice(0, -1))).toEqual(e);
    }
    expect(() => decodeIndexLine('{"x":1}')).toThrow(/malformed/);
  });
});

describe('filters and names', () => {
  const source = { connection: 'default' as const, container: 'photos', prefix: 'cats/' };
  it('takes the prefix, glob and extensions, and never the output inside the source', () => {
    const f = blobFilter(
      { ...source, glob: 'cats/**/*.{jpg,png}', extensions: ['JPG', '.png'] },
      { container: 'photos', prefix: 'cats/out', format: 'parquet' },
    );
    expect(f('cats/a.jpg')).toBe(true);
    expect(f('cats/x/y/B.JPG')).toBe(false); // the glob is case-sensitive
    expect(f('cats/x/y/b.png')).toBe(true);
    expect(f('dogs/a.jpg')).toBe(false);
    expect(f('cats/a.gif')).toBe(false);
    expect(f('cats/out/shards/x.png')).toBe(false);
    expect(f('cats/out/other.png')).toBe(true);
    expect(blobFilter({ ...source, extensions: ['jpg'] })('cats/B.JPG')).toBe(true);
    expect(validateGlob('**/*.jpg')).toBeUndefined();
  });

  it('lays the output out under its prefix, with chunk ids that sort by seq', () => {
    const layout = new OutputLayout('vectors/v1');
    expect(layout.manifest).toBe('vectors/v1/_manifest.json');
    expect(layout.shard('ing-a-c00000002', 'parquet')).toBe('vectors/v1/shards/ing-a-c00000002.parquet');
    expect(layout.relative('vectors/v1/shards/x.jsonl')).toBe('shards/x.jsonl');
    expect(new OutputLayout('').manifest).toBe('_manifest.json');
    expect(layout.owns('vectors/v1/_index/index.ndjson')).toBe(true);
    expect(layout.owns('vectors/v1/photo.jpg')).toBe(false);
    const ids = [0, 9, 10, 99, 100, 12345].map((s) => chunkId('ing-a', 0, s));
    expect([...ids].sort()).toEqual(ids);
    expect(chunkId('ing-a', 2, 7)).toBe('ing-a-r2-c00000007');
    const a = newIngestionId(1_000);
    const b = newIngestionId(2_000_000_000_000);
    expect(a < b).toBe(true);
    expect(a).toMatch(/^ing-[0-9a-z]{9}-[0-9a-f]{8}$/);
  });

  it('parses requests with defaults and normalized prefixes', () => {
    const r = createIngestionRequestSchema.parse({
      source: { container: 'photos', prefix: '/cats/' },
      output: { container: 'vectors', prefix: '/a/b/' },
    });
    expect(r).toEqual({
      source: { connection: 'default', container: 'photos', prefix: 'cats/' },
      output: { container: 'vectors', prefix: 'a/b', format: 'parquet' },
      retryUnchangedFailures: false,
    });
    expect(
      createIngestionRequestSchema.safeParse({ source: { container: 'A' }, output: { container: 'b' } })
        .success,
    ).toBe(false);
    expect(
      createIngestionRequestSchema.safeParse({
        source: { container: 'photos', connection: 'other' },
        output: { container: 'vectors' },
      }).success,
    ).toBe(false);
  });

  it('reads settings from a config or an environment, with defaults', () => {
    expect(ingestSettingsFrom({}).INGEST_CHUNK_SIZE).toBe(128);
    expect(ingestSettingsFrom({ INGEST_CHUNK_SIZE: '64' }).INGEST_CHUNK_SIZE).toBe(64);
    expect(ingestSettingsFrom({ INGEST_CHUNK_SIZE: 200 }, { INGEST_ATTEMPTS: 2 })).toMatchObject({
      INGEST_CHUNK_SIZE: 200,
      INGEST_ATTEMPTS: 2,
    });
    expect(() => ingestSettingsFrom({ INGEST_CHUNK_SIZE: '0' })).toThrow();
  });
});

describe('shards', () => {
  const rows = Array.from({ length: 5 }, (_, i) => ({
    name: `p/${i}.jpg`,
    etag: `0x${i}`,
    size: 1000 + i,
    vector: Float32Array.from({ length: 7 }, (_, j) => Math.fround(Math.sin(i * 7 + j) * 1e3) / 3),
  }));
  const meta = {
    container: 'photos',
    modelId: 'm',
    dim: 7,
    ingestionId: 'ing-a',
    run: 2,
    chunk: 'ing-a-c00000001',
  };

  it.each(['parquet', 'jsonl'] as const)('round-trip %s exactly (float32 bit for bit)', async (format) => {
    const back = await decodeShard(format, encodeShard(format, rows, meta));
    expect(back.map((r) => [r.name, r.etag, r.size, r.model])).toEqual(
      rows.map((r) => [r.name, r.etag, r.size, 'm']),
    );
    back.forEach((r, i) => expect(Array.from(r.vector)).toEqual(Array.from(rows[i]!.vector)));
    const names = await decodeShard(format, encodeShard(format, rows, meta), { vectors: false });
    expect(names[0]!.vector).toHaveLength(0);
  });

  it.each(['parquet', 'jsonl'] as const)(
    '%s rows carry a stable key-safe id: UUIDv5 of container/blob name',
    async (format) => {
      const back = await decodeShard(format, encodeShard(format, rows, meta));
      for (const r of back) {
        expect(r.id).toBe(blobRowId('photos', r.name));
        // Azure AI Search keys: A-Za-z0-9_-= only; Qdrant: a UUID.
        expect(r.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      }
      expect(new Set(back.map((r) => r.id)).size).toBe(rows.length);
      expect(blobRowId('other', 'p/0.jpg')).not.toBe(blobRowId('photos', 'p/0.jpg'));
    },
  );

  it('uuidV5 matches the RFC test vector', () => {
    // RFC 9562 appendix A.4: "www.example.com" in the DNS namespace.
    expect(uuidV5('www.example.com', '6ba7b810-9dad-11d1-80b4-00c04fd430c8')).toBe(
      '2ed6657d-e927-568b-95e1-2665a8aea6a2',
    );
  });

  it('writes the Arrow schema: vector is fixed_size_list<float32>[dim], every column non-null', () => {
    const md = parquetShardMetadata(encodeShard('parquet', rows, meta));
    expect(md['embedpool.schema_version']).toBe(String(SHARD_SCHEMA_VERSION));
    // The IPC schema message, followed by an end-of-stream marker, is a stream Arrow JS can read.
    const message = Buffer.from(md['ARROW:schema']!, 'base64');
    const eos = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    const schema = tableFromIPC(Buffer.concat([message, eos])).schema;
    expect(schema.fields.map((f) => f.name)).toEqual(SHARD_COLUMNS.map((c) => c.name));
    const vector = schema.fields.find((f) => f.name === 'vector')!;
    expect(vector.type).toBeInstanceOf(FixedSizeList);
    expect((vector.type as FixedSizeList).listSize).toBe(7);
    expect(String(vector.type)).toBe('FixedSizeList[7]<Float32>');
    expect(schema.fields.every((f) => !f.nullable)).toBe(true);
  });

  it('reads shards of the first layout (no id column, no Arrow schema)', async () => {
    const old = parquetWriteBuffer({
      columnData: [
        { name: 'blob_name', data: ['a.jpg'] },
        { name: 'etag', data: ['0x1'] },
        { name: 'content_length', data: [BigInt(3)] },
        { name: 'vector', data: [[1, 2]] },
        { name: 'model_id', data: ['m'] },
      ],
      schema: [
        { name: 'schema', num_children: 5 },
        { name: 'blob_name', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
        { name: 'etag', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
        { name: 'content_length', type: 'INT64', repetition_type: 'REQUIRED' },
        { name: 'vector', repetition_type: 'REQUIRED', converted_type: 'LIST', num_children: 1 },
        { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
        { name: 'element', type: 'FLOAT', repetition_type: 'REQUIRED' },
        { name: 'model_id', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
      ],
    });
    const [row] = await decodeShard('parquet', new Uint8Array(old));
    expect(row).toMatchObject({ name: 'a.jpg', etag: '0x1', size: 3, model: 'm' });
    expect(row!.id).toBeUndefined();
    expect(Array.from(row!.vector)).toEqual([1, 2]);
  });

  it('records model, dim and provenance in the Parquet key/value metadata', () => {
    expect(parquetShardMetadata(encodeShard('parquet', rows, meta))).toMatchObject({
      'embedpool.container': 'photos',
      'embedpool.model': 'm',
      'embedpool.dim': '7',
      'embedpool.run': '2',
      'embedpool.chunk': 'ing-a-c00000001',
    });
  });
});

describe('ingestion view', () => {
  const record = (over: Partial<IngestionRecord>): IngestionRecord =>
    ingestionRecordSchema.parse({
      id: 'ing-a',
      state: 'running',
      createdAt: 0,
      startedAt: 1_000,
      request: createIngestionRequestSchema.parse({
        source: { container: 'photos' },
        output: { container: 'vectors' },
      }),
      outputKey: 'k',
      ...over,
    });

  it('derives throughput over the last minute and an ETA', () => {
    const v = ingestionView(
      record({ discovered: 1000, queued: 600, done: 400, listingDone: true }),
      1200,
      121_000,
    );
    expect(v.throughput).toEqual({ imagesPerSecond: 20, windowSeconds: 60 });
    expect(v.etaSeconds).toBe(30);
    expect(v.etaIsLowerBound).toBe(false);
    // Started 10 s ago: the rate is over those 10 s, not a minute.
    const young = ingestionView(record({ queued: 100 }), 50, 11_000);
    expect(young.throughput.imagesPerSecond).toBe(5);
    expect(young.etaIsLowerBound).toBe(true);
    expect(ingestionView(record({ queued: -3 }), 0, 2_000).counts.queued).toBe(0);
    expect(ingestionView(record({ state: 'completed' }), 0).etaSeconds).toBe(0);
  });
});
