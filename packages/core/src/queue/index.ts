export { addBacklog, BacklogReconciler, backlogImages, backlogOrphans, removeBacklog } from './backlog';
export {
  clusterSeeds,
  createRedis,
  isRedisConnectionError,
  type RedisRole,
  type RedisSettings,
  useEntraRedisAuth,
} from './connection';
export {
  type Generation,
  GenerationWatch,
  type GenerationWatchOptions,
  missingIsLost,
  readGeneration,
  uuidV7Time,
} from './generation';
export type { InlineBlobStore } from './inline-images';
export {
  deleteInline,
  HANDOFF_TOKEN_HEADER,
  InlineReader,
  type InlineRef,
  type InlineSource,
  inlineKey,
  inlineRefSchema,
  inlineSourceSchema,
  type LoadedImage,
  packImages,
  storeInline,
  tokenMatches,
} from './inline-images';
export { hashTagged, JOBS, type JobName, keys, QUEUES, type QueueName } from './names';
export { prepareRedisAuth } from './redis-auth';
export { EntraRedisAuth, nextRefreshDelay, REDIS_ENTRA_SCOPE, tokenObjectId } from './redis-entra';
export { takeResult, writeResult } from './results';
export {
  type ImageRef,
  type ItemFailure,
  imageRefSchema,
  itemFailureSchema,
  type ScoreJobData,
  type ScoreJobInput,
  type ScoreResult,
  scoreJobSchema,
  scoreResultSchema,
} from './schemas';
export { ScoreQueue, type ScoreQueueOptions } from './score-queue';
export {
  heartbeat,
  type LiveWorker,
  liveWorkers,
  pruneWorkers,
  removeWorker,
  type WorkerInfo,
  workerInfoSchema,
} from './worker-registry';
