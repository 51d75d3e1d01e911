export { type BlobFilter, blobFilter, validateGlob } from './filter';
export {
  BlobTextWriter,
  compareNames,
  decodeIndexLine,
  encodeIndexLine,
  IndexCursor,
  type IndexEntry,
  type IndexLine,
  readIndexLines,
} from './index-file';
export {
  type IngestionManifest,
  MANIFEST_FORMAT,
  type ManifestRun,
  type ManifestShard,
} from './manifest';
export {
  csvColumn,
  type ManifestFormat,
  type ManifestItem,
  manifestFormat,
  parseManifestLines,
  wholeLines,
} from './manifest-input';
export {
  chunkId,
  chunkIdPrefix,
  INGEST_JOBS,
  INGEST_QUEUES,
  INGESTION_ID,
  ingestionKeys,
  ingestJobIds,
  ingestKeys,
  newIngestionId,
  normalizePrefix,
  OutputLayout,
  outputKey,
  type ShardFormat,
} from './names';
export { type IngestQueueOptions, IngestQueues } from './queue';
export { blobRowId, ROW_ID_NAMESPACE, uuidV5 } from './row-id';
export {
  type BlobFailure,
  blobFailureSchema,
  type CallbackState,
  type ChunkBlob,
  type ChunkJobData,
  type CreateIngestionRequest,
  chunkJobSchema,
  createIngestionRequestSchema,
  FINAL_INGESTION_STATES,
  INGESTION_STATES,
  type IngestionError,
  type IngestionOutput,
  type IngestionRecord,
  type IngestionSource,
  type IngestionState,
  ingestionRecordSchema,
  isFinalIngestionState,
  type PlanCheckpoint,
  type PlanJobData,
  planJobSchema,
  type RetryNote,
  retryNoteSchema,
} from './schemas';
export {
  IngestionService,
  type IngestionServiceOptions,
  type IngestionView,
  ingestionView,
} from './service';
export {
  DEFAULT_INGEST_SETTINGS,
  INGEST_ENV_NAMES,
  type IngestSettings,
  ingestEnvSchema,
  ingestSettingsFrom,
} from './settings';
export {
  arrowSchemaMetadata,
  type DecodedShardRow,
  decodeShard,
  encodeJsonlShard,
  encodeParquetShard,
  encodeShard,
  parquetShardMetadata,
  SHARD_COLUMNS,
  SHARD_CONTENT_TYPES,
  SHARD_SCHEMA_VERSION,
  type ShardMeta,
  type ShardRow,
} from './shard-format';
export { IngestionStore } from './store';
export type {
  CheckpointStatus,
  ChunkContext,
  ChunkOutcome,
  CommitStatus,
  PageCheckpoint,
} from './store-types';
