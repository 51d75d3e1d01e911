import { readFile, stat } from 'node:fs/promises';
import { EmbedpoolError } from '@embedpool/core/errors';

function fsError(path: string, err: unknown): EmbedpoolError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new EmbedpoolError('NOT_FOUND', `no such file: ${path}`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new EmbedpoolError('BAD_REQUEST', `cannot read ${path}: ${message}`, { cause: err });
}

/**
 * Reads one input image. The size is checked from the directory entry first, so an oversized file
 * costs a stat, not `maxBytes` of memory; preprocess checks the bytes again (the file may have grown).
 */
export async function readImageFile(path: string, maxBytes: number): Promise<Uint8Array> {
  let size: number;
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new EmbedpoolError('BAD_REQUEST', `not a regular file: ${path}`);
    size = s.size;
  } catch (err) {
    throw err instanceof EmbedpoolError ? err : fsError(path, err);
  }
  if (size > maxBytes) {
    throw new EmbedpoolError('IMAGE_TOO_LARGE', `image is ${size} bytes; the limit is ${maxBytes} bytes`, {
      details: { bytes: size, maxBytes },
    });
  }
  try {
    return await readFile(path);
  } catch (err) {
    throw fsError(path, err);
  }
}
