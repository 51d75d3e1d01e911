import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '../errors';
import { inlineRefSchema, inlineSourceSchema } from './inline-images';

/**
 * One image as a job carries it: a URL the worker fetches, the encoded bytes as base64 (jobs queued by older
 * APIs), or a slice of the job's inline bytes (see inline-images.ts).
 */
export const imageRefSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('url'), url: z.string().min(1).max(8192) }),
  z.object({ kind: z.literal('base64'), data: z.string().min(1) }),
  inlineRefSchema,
]);
export type ImageRef = z.infer<typeof imageRefSchema>;

export const scoreJobSchema = z.object({
  requestId: z.string().min(1).max(128),
  images: z.array(imageRefSchema).min(1),
  /** Epoch ms after which nobody waits for the answer: a worker that gets the job later drops it. */
  deadline: z.number().int().positive(),
  normalize: z.boolean().default(false),
  /** Where the `inline` images' bytes are. */
  inline: inlineSourceSchema.optional(),
});
export type ScoreJobData = z.infer<typeof scoreJobSchema>;
export type ScoreJobInput = z.input<typeof scoreJobSchema>;

const errorCodeSchema = z.custom<ErrorCode>((v) => typeof v === 'string' && Object.hasOwn(ERROR_CODES, v));

export const itemFailureSchema = z.object({
  index: z.number().int().min(0),
  code: errorCodeSchema,
  message: z.string(),
});
export type ItemFailure = z.infer<typeof itemFailureSchema>;

/**
 * What a score job returns through BullMQ. The vectors themselves go to a separate binary key (float32,
 * `keys.result`), so neither the job hash nor the events stream carries kilobytes of numbers as text.
 */
export const scoreResultSchema = z.object({
  count: z.number().int().min(0),
  dim: z.number().int().min(0),
  failures: z.array(itemFailureSchema),
  model: z.string(),
});
export type ScoreResult = z.infer<typeof scoreResultSchema>;
