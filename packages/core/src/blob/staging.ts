import type { BlobServiceClient } from '@azure/storage-blob';
import { EmbedpoolError } from '../errors';
import type { InlineBlobStore, InlineSource } from '../queue/inline-images';

/**
 * Async jobs' inline images staged as one blob per job (JOB_STAGING_CONTAINER) instead of a Redis key: the
 * storage account carries the bytes, Redis only the job. Written once by the API, read by range by the
 * worker, deleted when the job is final.
 */
export class BlobStaging implements InlineBlobStore {
  private created: Promise<unknown> | undefined;

  constructor(
    private readonly client: BlobServiceClient,
    private readonly container: string,
  ) {}

  /**
   * Throws UNAVAILABLE naming blob storage when the upload fails: a refused connection must not read as
   * "redis is unreachable" (the API's mapping of bare connection errors), and the storage SDK's message
   * names hosts the client has no business seeing; the code (ECONNREFUSED, AuthorizationFailure, ...) is kept.
   */
  async stage(name: string, buffer: Buffer): Promise<InlineSource> {
    const container = this.client.getContainerClient(this.container);
    try {
      this.created ??= container.createIfNotExists().catch((err: unknown) => {
        this.created = undefined;
        throw err;
      });
      await this.created;
      await container.getBlockBlobClient(name).uploadData(buffer);
    } catch (err) {
      const { code, statusCode } = err as { code?: unknown; statusCode?: unknown };
      const why = [code, statusCode].filter((x) => typeof x === 'string' || typeof x === 'number').join(' ');
      throw new EmbedpoolError(
        'UNAVAILABLE',
        `could not stage the job's images in blob storage${why ? ` (${why})` : ''}; retry shortly`,
        { cause: err },
      );
    }
    return { via: 'blob', container: this.container, name };
  }

  /**
   * The bytes in [offset, offset + length), fewer where the blob ends first (InlineReader reads whole windows
   * and checks each image's length itself). One ranged GET: downloadToBuffer would pad a short read with zeros.
   */
  async read(container: string, name: string, offset: number, length: number): Promise<Uint8Array> {
    const res = await this.client
      .getContainerClient(container)
      .getBlockBlobClient(name)
      .download(offset, length);
    const chunks: Buffer[] = [];
    for await (const c of res.readableStreamBody ?? []) chunks.push(c as Buffer);
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }

  async delete(container: string, name: string): Promise<void> {
    await this.client.getContainerClient(container).getBlockBlobClient(name).deleteIfExists();
  }
}
