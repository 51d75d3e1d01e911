export {
  createCallbackPolicy,
  createDeliveryMetrics,
  type DeliveryWorkerHandle,
  type StartDeliveryWorkerOptions,
  startDeliveryWorker,
} from './delivery-worker';
export {
  createFetchPolicy,
  createWorkerBlobClient,
  createWorkerDeps,
  type WorkerDeps,
  type WorkerDepsOptions,
} from './deps';
export { createIngestProcessors, type IngestWorkerHandle, startIngestWorker } from './ingest';
export { createWorkerMetrics, type WorkerMetrics } from './metrics';
export { startMetricsServer } from './metrics-server';
export { type ModelSource, resolveModel } from './model-source';
export { decodeBase64Image, loadImageBytes } from './stages/fetch';
export { type WarmUpResult, warmUp } from './warm-up';
export { type StartWorkerOptions, startWorker, type WorkerHandle } from './worker';
