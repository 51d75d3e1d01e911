import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

const SHA256_RE = /^[0-9a-f]{64}$/;

export async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20, signal })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

/** Lowercase hex, or undefined when the value is not a sha256 at all. */
export function normalizeSha256(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const hex = value
    .trim()
    .toLowerCase()
    .replace(/^sha256:/, '');
  return SHA256_RE.test(hex) ? hex : undefined;
}

/**
 * The hub sends the LFS sha256 as `X-Linked-Etag`, quoted and sometimes weak (`W/"..."`). A 40-hex
 * value is a git blob sha1 of a non-LFS file, which says nothing about the bytes' sha256.
 */
export function sha256FromEtag(etag: string | undefined): string | undefined {
  if (etag === undefined) return undefined;
  return normalizeSha256(
    etag
      .trim()
      .replace(/^W\//i, '')
      .replace(/^"(.*)"$/, '$1'),
  );
}
