export { addBacklog, BacklogReconciler, backlogImages, backlogOrphans, removeBacklog } from './backlog';
export { createRedis, isRedisConnectionError, type RedisRole } from './connection';
export {
  type Generation,
  GenerationWatch,
  type GenerationWatchOptions,
  missingIsLost,
  readGeneration,
  uuidV7Time,
} from './generation';
export { JOBS, type JobName, keys, QUEUES, type QueueName } from './names';
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
