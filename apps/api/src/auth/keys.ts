import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Hex SHA-256 of an API key: what API_KEYS holds (`printf %s "$KEY" | sha256sum` gives the same). */
export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A fresh API key: 256 random bits, URL-safe, no dots (so it can never be mistaken for a JWT). */
export function newKey(): string {
  return `ep_${randomBytes(32).toString('base64url')}`;
}

/** Longer presented credentials are refused without hashing them. */
const MAX_KEY_LENGTH = 1024;

/**
 * The configured keys, as digests. A presented key is hashed once and compared with every digest in
 * constant time, all of them every time, so neither a key's bytes nor its position leak through timing.
 * Several entries may share a name: that name is one owner with several valid keys (rotation).
 */
export class KeyRing {
  private readonly entries: { name: string; digest: Buffer }[];

  constructor(entries: readonly { name: string; sha256: string }[]) {
    this.entries = entries.map((e) => ({ name: e.name, digest: Buffer.from(e.sha256, 'hex') }));
  }

  get size(): number {
    return this.entries.length;
  }

  /** The key's name, or undefined when it matches no configured key. */
  match(presented: string): string | undefined {
    if (presented.length === 0 || presented.length > MAX_KEY_LENGTH) return undefined;
    const digest = createHash('sha256').update(presented, 'utf8').digest();
    let found: string | undefined;
    for (const e of this.entries) {
      if (timingSafeEqual(digest, e.digest) && found === undefined) found = e.name;
    }
    return found;
  }
}

/** Constant-time equality of two secrets of any length (compares their digests). */
export function sameSecret(a: string, b: string): boolean {
  const x = createHash('sha256').update(a, 'utf8').digest();
  const y = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(x, y);
}
