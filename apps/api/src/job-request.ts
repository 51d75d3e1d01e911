import { createHash, type Hash } from 'node:crypto';
import type { Config } from '@embedpool/core/config';
import { EmbedpoolError } from '@embedpool/core/errors';
import { type CreateJobRequest, createJobRequestSchema, type EmbedJobData } from '@embedpool/core/jobs';
import { type RowFailure, RowFailuresError } from './http-errors';
import { checkBase64, parseImageCell } from './image-input';

/** Validates a POST /v1/jobs body into the queue payload; every bad image is reported by its index. */
export function parseJobRequest(
  body: unknown,
  config: Config,
  jobId: string,
  createdAt: number,
): { request: CreateJobRequest; data: EmbedJobData } {
  const parsed = createJobRequestSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new EmbedpoolError('BAD_REQUEST', `${issue.path.join('.') || 'body'}: ${issue.message}`);
  }
  const request = parsed.data;
  if (request.images.length > config.MAX_JOB_IMAGES) {
    throw new EmbedpoolError('TOO_MANY_IMAGES', `a job holds at most ${config.MAX_JOB_IMAGES} images`);
  }
  const failures: RowFailure[] = [];
  const seen = new Set<string>();
  const images = request.images.flatMap((img, index) => {
    const id = img.id ?? String(index);
    if (seen.has(id)) {
      failures.push({ row: index, code: 'BAD_REQUEST', message: `duplicate image id "${id}"` });
      return [];
    }
    seen.add(id);
    try {
      const ref =
        img.url !== undefined
          ? parseImageCell(img.url, config.MAX_IMAGE_BYTES)
          : { kind: 'base64' as const, data: checkBase64(img.base64!, config.MAX_IMAGE_BYTES) };
      if (img.url !== undefined && ref.kind !== 'url')
        throw new EmbedpoolError('URL_INVALID', 'url is not an http(s) URL');
      return [{ id, ref }];
    } catch (err) {
      const e = err instanceof EmbedpoolError ? err : new EmbedpoolError('BAD_REQUEST', String(err));
      failures.push({ row: index, code: e.code, message: e.message });
      return [];
    }
  });
  if (failures.length > 0) throw new RowFailuresError(failures);
  return {
    request,
    data: { jobId, images, normalize: request.normalize, output: request.output, createdAt },
  };
}

/**
 * Idempotency compares the request, not its bytes: key order and whitespace must not matter. The canonical
 * JSON is fed to the hash piece by piece rather than built as one string: a 64-image job is ~17 MB of base64,
 * and building and hashing that string once cost more API CPU than everything else the route does.
 */
export function requestHash(request: CreateJobRequest): string {
  const hash = createHash('sha256');
  feedStableJson(hash, request);
  return hash.digest('hex').slice(0, 32);
}

/** Writes the canonical JSON of `v` (sorted keys, no whitespace) into `hash`, the same bytes as before. */
function feedStableJson(hash: Hash, v: unknown): void {
  if (Array.isArray(v)) {
    hash.update('[');
    v.forEach((x, i) => {
      if (i > 0) hash.update(',');
      feedStableJson(hash, x);
    });
    hash.update(']');
  } else if (v && typeof v === 'object') {
    hash.update('{');
    Object.keys(v)
      .sort()
      .forEach((k, i) => {
        hash.update(`${i > 0 ? ',' : ''}${JSON.stringify(k)}:`);
        feedStableJson(hash, (v as Record<string, unknown>)[k]);
      });
    hash.update('}');
  } else {
    // JSON.stringify(undefined) is undefined: the old string concatenation wrote it as "undefined".
    hash.update(String(JSON.stringify(v)));
  }
}
