export { addBacklog, BacklogReconciler, backlogImages, backlogOrphans, removeBacklog } from './backlog';
export {
  DEFAULT_JOB_PRIORITY,
  DEFAULT_RETRY_POLICY,
  isJobName,
  JOB_CATALOGUE,
  JOB_NAMES,
  type JobData,
  type JobInput,
  type JobName,
  type JobsOn,
  jobOptions,
  jobsOn,
  QUEUE_NAMES,
  type QueueName,
  type QueueOf,
  type RetryPolicy,
  retryPolicyFrom,
} from './catalogue';
export {
  clusterSeeds,
  createRedis,
  isRedisConnectionError,
  type RedisRole,
  type RedisSettings,
  useEntraRedisAuth,
} from './connection';
export { createDispatcher, type Handler, type Handlers } from './dispatch';
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
  packBase64,
  packImages,
  storeInline,
  tokenMatches,
} from './inline-images';
export { permanentJobFailure, toJobFailure } from './job-failure';
export { hashTagged, JOBS, keys, QUEUES } from './names';
export { type EnqueueOptions, JobProducer, type JobProducerOptions, type ValidJob } from './producer';
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
