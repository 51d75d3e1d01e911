import { Field, FixedSizeList, Float32, Int64, Schema, Table, tableToIPC, Utf8 } from 'apache-arrow';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { parquetWriteBuffer, type SchemaElement } from 'hyparquet-writer';
import type { ShardFormat } from './names';
import { blobRowId } from './row-id';

/**
 * The shard layout's version, in each Parquet file's key/value metadata (`embedpool.schema_version`) and in
 * the manifest (`shardSchemaVersion`). 1: no `id` column, `vector` read as a variable-size list. 2: `id`
 * (UUIDv5 of container and blob name) and the Arrow schema, so `vector` reads as a fixed-size list.
 */
export const SHARD_SCHEMA_VERSION = 2;

/** One output row: a blob and its vector. */
export interface ShardRow {
  name: string;
  etag: string;
  size: number;
  vector: Float32Array;
}

export interface ShardMeta {
  /** The source container: with the blob name, it makes the row's `id`. */
  container: string;
  modelId: string;
  dim: number;
  ingestionId: string;
  run: number;
  chunk: string;
}

/**
 * Parquet schema of a shard. `vector` is a standard 3-level LIST of REQUIRED FLOAT with exactly `dim`
 * values; the file's `ARROW:schema` metadata (the Arrow IPC schema, base64, as pyarrow and arrow-rs write
 * and read it) declares it `fixed_size_list<element: float not null>[dim]`, which is what vector stores
 * (LanceDB, pyarrow -> FixedShapeTensor/numpy) need. Readers that ignore that key see `list<float>`.
 * `id` is a UUIDv5 of the source container and blob name: stable across runs, usable as an Azure AI Search
 * key and a Qdrant point id.
 */
export const SHARD_COLUMNS = [
  { name: 'blob_name', type: 'string', about: 'the blob name in the source container' },
  { name: 'etag', type: 'string', about: 'the ETag of the bytes that were embedded' },
  { name: 'content_length', type: 'int64', about: 'their size in bytes' },
  {
    name: 'vector',
    type: 'fixed_size_list<float32>[dim]',
    about: 'the embedding (dim values, not normalized)',
  },
  { name: 'model_id', type: 'string', about: 'the model that made it' },
  {
    name: 'id',
    type: 'string',
    about: 'UUIDv5 of "<container>/<blob name>": the same blob has the same id in every run',
  },
] as const;

const SCHEMA: SchemaElement[] = [
  { name: 'schema', num_children: 6 },
  { name: 'blob_name', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
  { name: 'etag', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
  { name: 'content_length', type: 'INT64', repetition_type: 'REQUIRED' },
  { name: 'vector', repetition_type: 'REQUIRED', converted_type: 'LIST', num_children: 1 },
  { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  { name: 'element', type: 'FLOAT', repetition_type: 'REQUIRED' },
  { name: 'model_id', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
  { name: 'id', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
];

const arrowSchemas = new Map<number, string>();

/**
 * The shard's Arrow schema as one IPC message (continuation marker, length, flatbuffer), base64: the
 * `ARROW:schema` value that Arrow's Parquet readers (C++/pyarrow, arrow-rs, arrow-go) use to restore types
 * Parquet cannot say, here the fixed size of `vector`.
 */
export function arrowSchemaMetadata(dim: number): string {
  let cached = arrowSchemas.get(dim);
  if (cached) return cached;
  const schema = new Schema([
    new Field('blob_name', new Utf8(), false),
    new Field('etag', new Utf8(), false),
    new Field('content_length', new Int64(), false),
    new Field('vector', new FixedSizeList(dim, new Field('element', new Float32(), false)), false),
    new Field('model_id', new Utf8(), false),
    new Field('id', new Utf8(), false),
  ]);
  // An empty table's stream is its schema message and the end-of-stream marker; keep the message only.
  let ipc = tableToIPC(new Table(schema), 'stream');
  const eos = ipc.subarray(ipc.length - 8);
  if (eos.every((b, i) => b === (i < 4 ? 0xff : 0))) ipc = ipc.subarray(0, ipc.length - 8);
  cached = Buffer.from(ipc).toString('base64');
  arrowSchemas.set(dim, cached);
  return cached;
}

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
      { name: 'id', data: rows.map((r) => blobRowId(meta.container, r.name)) },
    ],
    schema: SCHEMA,
    // One row group: a shard is a chunk (hundreds of rows); statistics on names help readers that filter.
    rowGroupSize: Math.max(1, rows.length),
    kvMetadata: [
      { key: 'ARROW:schema', value: arrowSchemaMetadata(meta.dim) },
      { key: 'embedpool.schema_version', value: String(SHARD_SCHEMA_VERSION) },
      { key: 'embedpool.container', value: meta.container },
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

/**
 * JSON lines: `{"id","blob_name","etag","content_length","model_id","vector":[...]}`; floats round-trip
 * exactly.
 */
export function encodeJsonlShard(rows: readonly ShardRow[], meta: ShardMeta): Buffer {
  let text = '';
  for (const r of rows) {
    text += `${JSON.stringify({
      id: blobRowId(meta.container, r.name),
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
  /** Absent in shards of schema version 1 (compute it with blobRowId). */
  id?: string;
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
          id?: string;
          blob_name: string;
          etag: string;
          content_length: number;
          model_id: string;
          vector: number[];
        };
        return {
          ...(o.id ? { id: o.id } : {}),
          name: o.blob_name,
          etag: o.etag,
          size: o.content_length,
          model: o.model_id,
          vector: withVectors ? Float32Array.from(o.vector) : new Float32Array(0),
        };
      });
  }
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  // Version 1 shards have no `id`: read it only where the file has it.
  const hasId = parquetMetadata(file).schema.some((e) => e.name === 'id');
  const columns = [
    'blob_name',
    'etag',
    'content_length',
    'model_id',
    ...(withVectors ? ['vector'] : []),
    ...(hasId ? ['id'] : []),
  ];
  const rows = (await parquetReadObjects({ file, columns })) as {
    id?: string;
    blob_name: string;
    etag: string;
    content_length: bigint | number;
    model_id: string;
    vector?: number[];
  }[];
  return rows.map((r) => ({
    ...(r.id ? { id: r.id } : {}),
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
