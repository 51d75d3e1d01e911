import { describe, expect, it } from 'vitest';
import { blobFilter, validateGlob } from './filter';
import { compareNames, decodeIndexLine, encodeIndexLine } from './index-file';
import { chunkId, newIngestionId, OutputLayout } from './names';
import { createIngestionRequestSchema, type IngestionRecord, ingestionRecordSchema } from './schemas';
import { ingestionView } from './service';
import { ingestSettingsFrom } from './settings';
import { decodeShard, encodeShard, parquetShardMetadata } from './shard-format';

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
  const meta = { modelId: 'm', dim: 7, ingestionId: 'ing-a', run: 2, chunk: 'ing-a-c00000001' };

  it.each(['parquet', 'jsonl'] as const)('round-trip %s exactly (float32 bit for bit)', async (format) => {
    const back = await decodeShard(format, encodeShard(format, rows, meta));
    expect(back.map((r) => [r.name, r.etag, r.size, r.model])).toEqual(
      rows.map((r) => [r.name, r.etag, r.size, 'm']),
    );
    back.forEach((r, i) => expect(Array.from(r.vector)).toEqual(Array.from(rows[i]!.vector)));
    const names = await decodeShard(format, encodeShard(format, rows, meta), { vectors: false });
    expect(names[0]!.vector).toHaveLength(0);
  });

  it('records model, dim and provenance in the Parquet key/value metadata', () => {
    expect(parquetShardMetadata(encodeShard('parquet', rows, meta))).toMatchObject({
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
