export { normalizeEtag } from './blob-download';
export type { ChunkIndexFile } from './chunk-processor';
export type { IngestDeps, IngestMetrics } from './deps';
export {
  createIngestMetrics,
  createIngestProcessors,
  type IngestWorkerHandle,
  type StartIngestWorkerOptions,
  startIngestWorker,
} from './ingest-worker';
