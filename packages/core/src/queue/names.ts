/**
 * Queue and job names, shared by every producer and consumer so the two sides cannot drift apart. Each job
 * name's queue, schema and options are in catalogue.ts (ingestion's names are in ingest/names.ts).
 */
export const QUEUES = {
  /** Image embedding work: synchronous /score requests (and, later, async jobs). */
  embed: 'embed',
  /** Callback deliveries: apart from embedding, so a failing receiver never causes re-inference. */
  deliveries: 'deliveries',
} as const;

export const JOBS = {
  /** A synchronous /score (or /v1/embeddings) request: someone is waiting on the answer. */
  score: 'score',
  /** An async /v1/jobs job: the answer goes to its output (inline, blob or callback). */
  embedJob: 'embed-job',
  /** One callback POST. */
  deliver: 'deliver',
} as const;

/** Redis keys outside BullMQ's own, all under the deployment's prefix. */
export const keys = {
  result: (prefix: string, jobId: string) => `${prefix}:result:${jobId}`,
  workers: (prefix: string) => `${prefix}:workers`,
  workerInfo: (prefix: string) => `${prefix}:workers:info`,
  cancelled: (prefix: string, jobId: string) => `${prefix}:cancelled:${jobId}`,
  /** Hash jobId -> images still to embed: the backlog in images, whatever the job kind. */
  backlog: (prefix: string) => `${prefix}:backlog`,
  /** The data marker (see generation.ts): tells a Redis that lost its data from one that kept it. */
  generation: (prefix: string) => `${prefix}:generation`,
};

/**
 * QUEUE_PREFIX as a Redis Cluster hash tag: `embedpool` -> `{embedpool}`. Every key of a deployment then
 * hashes to one slot, so BullMQ's scripts and ours (which touch several keys at once) work on a clustered
 * Redis (Azure Managed Redis, Redis Cluster) as on a single server. A prefix already in braces is kept.
 */
export function hashTagged(prefix: string): string {
  return /^\{[^{}]+\}$/.test(prefix) ? prefix : `{${prefix}}`;
}
