import type { ContainerClient } from '@azure/storage-blob';
import { EmbedpoolError } from '@embedpool/core/errors';

/** ETags as one spelling: listings give `0x8D...`, response headers `"0x8D..."`. */
export function normalizeEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

export interface DownloadedBlob {
  bytes: Buffer;
  /** The ETag of the bytes read (not the listing's: the blob may have changed since). */
  etag: string;
  size: number;
}

/**
 * Streams one blob into memory, refusing (without reading it) a blob whose declared size is over `maxBytes`
 * and stopping a body that grows past it. The SDK resumes a broken body with If-Match on the same ETag, so
 * the bytes always belong to one version.
 */
export async function downloadBlob(
  container: ContainerClient,
  name: string,
  opts: { maxBytes: number; signal?: AbortSignal },
): Promise<DownloadedBlob> {
  const res = await container.getBlobClient(name).download(0, undefined, {
    maxRetryRequests: 3,
    ...(opts.signal ? { abortSignal: opts.signal } : {}),
  });
  const body = res.readableStreamBody;
  const declared = res.contentLength ?? 0;
  if (declared > opts.maxBytes) {
    body?.on('error', () => {});
    (body as NodeJS.ReadableStream & { destroy?: () => void })?.destroy?.();
    throw new EmbedpoolError(
      'IMAGE_TOO_LARGE',
      `blob is ${declared} bytes, over MAX_IMAGE_BYTES (${opts.maxBytes})`,
    );
  }
  const chunks: Buffer[] = [];
  let total = 0;
  if (body) {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > opts.maxBytes) {
        (body as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
        throw new EmbedpoolError('IMAGE_TOO_LARGE', `blob is over MAX_IMAGE_BYTES (${opts.maxBytes})`);
      }
      chunks.push(chunk);
    }
  }
  return { bytes: Buffer.concat(chunks, total), etag: normalizeEtag(res.etag), size: total };
}
