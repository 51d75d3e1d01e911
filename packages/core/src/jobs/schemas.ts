import { z } from 'zod';
import { inlineRefSchema, inlineSourceSchema } from '../queue/inline-images';
import { itemFailureSchema } from '../queue/schemas';

/** One image of an async job: a URL or base64, with an optional caller id echoed in every output. */
export const jobImageSchema = z
  .object({
    id: z.string().min(1).max(256).optional(),
    url: z.string().min(1).max(8192).optional(),
    base64: z.string().min(1).optional(),
  })
  .refine((i) => (i.url === undefined) !== (i.base64 === undefined), {
    message: 'each image needs exactly one of url or base64',
  });
export type JobImage = z.infer<typeof jobImageSchema>;

export const jobOutputSchema = z.discriminatedUnion('type', [
  /** Vectors kept in Redis for JOB_RESULT_TTL_S, fetched with GET /v1/jobs/{id}/result. */
  z.object({ type: z.literal('inline') }),
  /** JSON lines (and optionally .npy) written to the deployment's storage account. */
  z.object({
    type: z.literal('blob'),
    container: z.string().regex(/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/, 'not a valid container name'),
    path: z.string().min(1).max(1024).default('{date}/{jobId}'),
    npy: z.boolean().default(false),
    /** Optional: POST a pointer to the blobs here once they are written. */
    callbackUrl: z.string().url().optional(),
  }),
  /** The vectors POSTed (signed) to this URL. */
  z.object({ type: z.literal('callback'), url: z.string().url() }),
]);
export type JobOutput = z.infer<typeof jobOutputSchema>;

export const createJobRequestSchema = z.object({
  images: z.array(jobImageSchema).min(1),
  normalize: z.boolean().default(false),
  /** 1 (highest) .. 1000; BullMQ runs lower numbers first. */
  priority: z.number().int().min(1).max(1000).optional(),
  output: jobOutputSchema.default({ type: 'inline' }),
});
export type CreateJobRequest = z.infer<typeof createJobRequestSchema>;

export const JOB_STATES = [
  'queued',
  'running',
  'completed',
  'partially_failed',
  'failed',
  'cancelled',
] as const;
export type JobState = (typeof JOB_STATES)[number];
export const FINAL_STATES: readonly JobState[] = ['completed', 'partially_failed', 'failed', 'cancelled'];

export const deliveryStateSchema = z.object({
  state: z.enum(['pending', 'delivered', 'dead']),
  deliveryId: z.string(),
  url: z.string(),
  attempts: z.number().int(),
  lastError: z.string().optional(),
  lastStatus: z.number().int().optional(),
  deliveredAt: z.number().optional(),
});
export type DeliveryState = z.infer<typeof deliveryStateSchema>;

export const jobLocationSchema = z.union([
  z.object({ type: z.literal('inline'), resultPath: z.string() }),
  z.object({ type: z.literal('blob'), container: z.string(), blobs: z.array(z.string()) }),
  z.object({ type: z.literal('callback'), url: z.string() }),
]);
export type JobLocation = z.infer<typeof jobLocationSchema>;

/** What GET /v1/jobs/{id} shows; kept in a Redis hash, one field per part so writers never clobber each other. */
export const jobRecordSchema = z.object({
  id: z.string(),
  state: z.enum(JOB_STATES),
  owner: z.string().optional(),
  createdAt: z.number(),
  startedAt: z.number().optional(),
  finishedAt: z.number().optional(),
  total: z.number().int(),
  succeeded: z.number().int().default(0),
  failed: z.number().int().default(0),
  itemIds: z.array(z.string()),
  normalize: z.boolean(),
  output: jobOutputSchema,
  failures: z.array(itemFailureSchema).default([]),
  location: jobLocationSchema.optional(),
  delivery: deliveryStateSchema.optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  model: z.string().optional(),
  dim: z.number().int().optional(),
});
export type JobRecord = z.infer<typeof jobRecordSchema>;

/** The queue payload of an async job: validated when enqueued and again when a worker takes it. */
export const embedJobSchema = z.object({
  jobId: z.string().min(1).max(128),
  images: z.array(
    z.object({
      id: z.string(),
      ref: z.discriminatedUnion('kind', [
        z.object({ kind: z.literal('url'), url: z.string() }),
        z.object({ kind: z.literal('base64'), data: z.string() }),
        inlineRefSchema,
      ]),
    }),
  ),
  normalize: z.boolean(),
  output: jobOutputSchema,
  createdAt: z.number(),
  /** Where the `inline` images' bytes are (a Redis key of the job's own). */
  inline: inlineSourceSchema.optional(),
});
export type EmbedJobData = z.infer<typeof embedJobSchema>;
