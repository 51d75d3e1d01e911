import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { parquetWriteBuffer, type SchemaElement } from 'hyparquet-writer';
import type { ShardFormat } from './names';

/** One output row: a blob and its vector. */
export interface ShardRow {
  name: string;
  etag: string;
  size: number;
  vector: Float32Array;
}

export interface ShardMeta {
  modelId: string;
  dim: number;
  ingestionId: string;
  run: number;
  chunk: string;
}

/**
 * Parquet schema of a shard. `vector` is a standard 3-level LIST of REQUIRED FLOAT, which pyarrow reads as
 * `list<element: float not null>` (each list has exactly `dim` values; the manifest records `dim`), polars
 * as `list[f32]`, DuckDB as `FLOAT[]`.
 */
export const SHARD_COLUMNS = [
  { name: 'blob_name', type: 'string', about: 'the blob name in the source container' },
  { name: 'etag', type: 'string', about: 'the ETag of the bytes that were embedded' },
  { name: 'content_length', type: 'int64', about: 'their size in bytes' },
  { name: 'vector', type: 'list<float32>', about: 'the embedding (dim values, not normalized)' },
  { name: 'model_id', type: 'string', about: 'the model that made it' },
] as const;

const SCHEMA: SchemaElement[] = [
  { name: 'schema', num_children: 5 },
  { name: 'blob_name', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
  { name: 'etag', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
  { name: 'content_length', type: 'INT64', repetition_type: 'REQUIRED' },
  { name: 'vector', repetition_type: 'REQUIRED', converted_type: 'LIST', num_children: 1 },
  { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  { name: 'element', type: 'FLOAT', repetition_type: 'REQUIRED' },
  { name: 'model_id', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
];

export const SHARD_CONTENT_TYPES: Record<ShardFormat, string> = {
  parquet: 'application/vnd.apache.parquet',
  jsonl: 'application/x-ndjson',
};

export function encodeParquetShard(rows: readonly ShardRow[], meta: ShardMeta): Uint8Array {
  const buf = parquetWriteBuffer({
    columnData: [
      { name: 'blob_name', data: rows.map((r) => r.name) },
      { name: 'etag', data: rows.map((r) => r.etag) },
      { name: 'content_length', data: rows.map((r) => BigInt(r.size)) },
      { name: 'vector', data: rows.map((r) => Array.from(r.vector)) },
      { name: 'model_id', data: rows.map(() => meta.modelId) },
    ],
    schema: SCHEMA,
    // One row group: a shard is a chunk (hundreds of rows); statistics on names help readers that filter.
    rowGroupSize: Math.max(1, rows.length),
    kvMetadata: [
      { key: 'embedpool.model', value: meta.modelId },
      { key: 'embedpool.dim', value: String(meta.dim) },
      { key: 'embedpool.ingestion', value: meta.ingestionId },
      { key: 'embedpool.run', value: String(meta.run) },
      { key: 'embedpool.chunk', value: meta.chunk },
    ],
    createdBy: 'embedpool',
  });
  return new Uint8Array(buf);
}

/** JSON lines: `{"blob_name","etag","content_length","model_id","vector":[...]}`; floats round-trip exactly. */
export function encodeJsonlShard(rows: readonly ShardRow[], meta: ShardMeta): Buffer {
  let text = '';
  for (const r of rows) {
    text += `${JSON.stringify({
      blob_name: r.name,
      etag: r.etag,
      content_length: r.size,
      model_id: meta.modelId,
      vector: Array.from(r.vector),
    })}\n`;
  }
  return Buffer.from(text, 'utf8');
}

export function encodeShard(format: ShardFormat, rows: readonly ShardRow[], meta: ShardMeta): Uint8Array {
  return format === 'parquet' ? encodeParquetShard(rows, meta) : encodeJsonlShard(rows, meta);
}

export interface DecodedShardRow extends ShardRow {
  model: string;
}

/** Reads a shard back (tests, the finalize's consistency repair, readers in Node). */
export async function decodeShard(
  format: ShardFormat,
  bytes: Uint8Array,
  opts: { vectors?: boolean } = {},
): Promise<DecodedShardRow[]> {
  const withVectors = opts.vectors ?? true;
  if (format === 'jsonl') {
    const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
    return text
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => {
        const o = JSON.parse(l) as {
          blob_name: string;
          etag: string;
          content_length: number;
          model_id: string;
          vector: number[];
        };
        return {
          name: o.blob_name,
          etag: o.etag,
          size: o.content_length,
          model: o.model_id,
          vector: withVectors ? Float32Array.from(o.vector) : new Float32Array(0),
        };
      });
  }
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const columns = withVectors
    ? ['blob_name', 'etag', 'content_length', 'model_id', 'vector']
    : ['blob_name', 'etag', 'content_length', 'model_id'];
  const rows = (await parquetReadObjects({ file, columns })) as {
    blob_name: string;
    etag: string;
    content_length: bigint | number;
    model_id: string;
    vector?: number[];
  }[];
  return rows.map((r) => ({
    name: r.blob_name,
    etag: r.etag,
    size: Number(r.content_length),
    model: r.model_id,
    vector: r.vector ? Float32Array.from(r.vector) : new Float32Array(0),
  }));
}

/** The key/value metadata of a Parquet shard (model, dim, ingestion, run, chunk). */
export function parquetShardMetadata(bytes: Uint8Array): Record<string, string> {
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const md = parquetMetadata(file);
  return Object.fromEntries((md.key_value_metadata ?? []).map((kv) => [kv.key, kv.value ?? '']));
}
