/**
 * An ingestion's blob failures in Redis: a sorted set of names (name order, for paging and the retry
 * rounds' snapshots) beside a hash of each failure's details. The Lua scripts write them; these read them
 * and encode what the scripts take.
 */
import type { Redis } from 'ioredis';
import { type BlobFailure, blobFailureSchema } from './schemas';

/** Failures as the scripts take them: `[name, details JSON, carried (1) or found in this run (0)]`. */
export function failureEntries(failures: readonly BlobFailure[], carried = 1): string {
  return JSON.stringify(failures.map((f) => [f.name, JSON.stringify(f), carried]));
}

/** A page of failures in name order: `limit` names after `after` from `names`, details from `info`. */
export async function readFailurePage(
  redis: Redis,
  keys: { names: string; info: string },
  after: string | undefined,
  limit: number,
): Promise<BlobFailure[]> {
  const names = await redis.zrangebylex(
    keys.names,
    after === undefined ? '-' : `(${after}`,
    '+',
    'LIMIT',
    0,
    limit,
  );
  if (names.length === 0) return [];
  const infos = await redis.hmget(keys.info, ...names);
  return names.map((name, i) => parseFailure(name, infos[i] ?? null));
}

/** Details that expired (or do not parse) leave a placeholder, so a page still lists every name. */
function parseFailure(name: string, info: string | null): BlobFailure {
  if (info) {
    const parsed = blobFailureSchema.safeParse(JSON.parse(info));
    if (parsed.success) return parsed.data;
  }
  return { name, etag: '', size: 0, code: 'UNKNOWN', message: 'details expired', permanent: false, at: 0 };
}
