/** Queue and job names, shared by every producer and consumer so the two sides cannot drift apart. */
export const QUEUES = {
  /** Image embedding work: synchronous /score requests (and, later, async jobs). */
  embed: 'embed',
} as const;

export const JOBS = {
  score: 'score',
} as const;

export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];
export type JobName = (typeof JOBS)[keyof typeof JOBS];

/** Redis keys outside BullMQ's own, all under the deployment's prefix. */
export const keys = {
  result: (prefix: string, jobId: string) => `${prefix}:result:${jobId}`,
  workers: (prefix: string) => `${prefix}:workers`,
  workerInfo: (prefix: string) => `${prefix}:workers:info`,
  cancelled: (prefix: string, jobId: string) => `${prefix}:cancelled:${jobId}`,
};
