import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

/**
 * A small file in each snapshot directory listing what was verified, so startup can find the model
 * without the network and without re-hashing hundreds of megabytes.
 */
export const RECORD_FILE = '.embedpool-fetch.json';

const recordSchema = z.object({
  version: z.literal(1),
  repo: z.string(),
  revision: z.string(),
  files: z.record(
    z.string(),
    z.object({
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      bytes: z.number().int().nonnegative(),
      /** False when the server offered no hash to check against (small non-LFS files). */
      verified: z.boolean(),
    }),
  ),
});

export type FetchRecord = z.infer<typeof recordSchema>;
export type FetchRecordEntry = FetchRecord['files'][string];

/** Undefined for a missing or unreadable record: the snapshot then simply counts as not fetched. */
export async function readRecord(dir: string): Promise<FetchRecord | undefined> {
  try {
    const parsed = recordSchema.safeParse(JSON.parse(await readFile(join(dir, RECORD_FILE), 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Merges entries into the record (variants share a snapshot directory) and replaces it atomically. */
export async function writeRecord(
  dir: string,
  ref: { repo: string; revision: string },
  entries: Record<string, FetchRecordEntry>,
): Promise<void> {
  const previous = await readRecord(dir);
  const record: FetchRecord = {
    version: 1,
    repo: ref.repo,
    revision: ref.revision,
    files: { ...(previous?.files ?? {}), ...entries },
  };
  const tmp = join(dir, `${RECORD_FILE}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`);
    await rename(tmp, join(dir, RECORD_FILE));
  } finally {
    await rm(tmp, { force: true });
  }
}
