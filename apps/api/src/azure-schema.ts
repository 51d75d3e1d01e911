import { EmbedpoolError } from '@embedpool/core/errors';
import type { ImageRef } from '@embedpool/core/queue';
import { z } from 'zod';
import { type RowFailure, RowFailuresError } from './http-errors';
import { parseImageCell } from './image-input';

export const IMAGE_COLUMN = 'image';

/**
 * The Azure ML online-endpoint contract (pandas "split" orientation). Cells stay `unknown` here: row-level
 * problems (a ragged row, a non-string image) must name their row, which a zod issue path says less clearly.
 */
export const azureScoreRequestSchema = z.object({
  input_data: z.object({
    columns: z.array(z.string()).min(1),
    // pandas writes any labels here; only its length has to agree with data.
    index: z.array(z.unknown()).optional(),
    data: z.array(z.array(z.unknown())),
  }),
});
export type AzureScoreRequest = z.infer<typeof azureScoreRequestSchema>;

export interface ScoreRequestLimits {
  maxImages: number;
  maxImageBytes: number;
}

/**
 * Turns a parsed JSON body into one ImageRef per row, in row order. Request-level problems throw an
 * EmbedpoolError; row-level ones are collected over every row and thrown together as RowFailuresError,
 * so a caller fixes a batch in one round trip.
 */
export function parseScoreRequest(body: unknown, limits: ScoreRequestLimits): ImageRef[] {
  if (body === undefined) {
    throw new EmbedpoolError('BAD_REQUEST', 'expected a JSON body (Content-Type: application/json)');
  }
  const parsed = azureScoreRequestSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.join('.') : 'body';
    throw new EmbedpoolError(
      'BAD_REQUEST',
      `${where}: ${issue?.message ?? 'invalid'} (expected {"input_data":{"columns":["image"],"index":[...],"data":[["<image>"],...]}})`,
    );
  }
  const { columns, index, data } = parsed.data.input_data;
  if (data.length === 0) throw new EmbedpoolError('BAD_REQUEST', 'input_data.data is empty');
  if (data.length > limits.maxImages) {
    throw new EmbedpoolError(
      'TOO_MANY_IMAGES',
      `${data.length} images in one request; at most ${limits.maxImages} are allowed`,
    );
  }
  const col = columns.indexOf(IMAGE_COLUMN);
  if (col < 0) {
    throw new EmbedpoolError('BAD_REQUEST', `input_data.columns has no "${IMAGE_COLUMN}" column`);
  }
  if (columns.indexOf(IMAGE_COLUMN, col + 1) >= 0) {
    throw new EmbedpoolError('BAD_REQUEST', `input_data.columns names "${IMAGE_COLUMN}" more than once`);
  }
  if (index !== undefined && index.length !== data.length) {
    throw new EmbedpoolError(
      'BAD_REQUEST',
      `input_data.index has ${index.length} entries but data has ${data.length} rows`,
    );
  }

  const images: ImageRef[] = [];
  const failures: RowFailure[] = [];
  data.forEach((cells, row) => {
    if (cells.length !== columns.length) {
      const message = `row has ${cells.length} cells but there are ${columns.length} columns`;
      failures.push({ row, code: 'BAD_REQUEST', message });
      return;
    }
    const cell = cells[col];
    if (typeof cell !== 'string') {
      const message = `"${IMAGE_COLUMN}" must be a string (URL or base64), got ${describe(cell)}`;
      failures.push({ row, code: 'BAD_REQUEST', message });
      return;
    }
    try {
      images.push(parseImageCell(cell, limits.maxImageBytes));
    } catch (err) {
      if (!(err instanceof EmbedpoolError)) throw err;
      failures.push({ row, code: err.code, message: err.message });
    }
  });
  if (failures.length > 0) throw new RowFailuresError(failures);
  return images;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}
