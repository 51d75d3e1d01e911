import type { BlobServiceClient } from '@azure/storage-blob';
import type { Redis } from 'ioredis';
import type { JobVectorsManifest } from '../blob/blob-sink';
import { ingestKeys } from '../ingest/names';
import { jobKeys } from '../jobs/job-store';
import { type Generation, readGeneration, uuidV7Time } from '../queue/generation';

/** Why an output has no record: `lost` when it was made within the record TTL (it should still be there). */
export type Orphan = 'lost' | 'expired' | 'lost-or-expired';

export interface OrphanJobOutput {
  jobId: string;
  why: Orphan;
  container: string;
  manifest: string;
  files: string[];
  model: string;
  dim: number;
  count: number;
  failed: number;
  createdAt?: string;
}

export interface OrphanIngestionOutput {
  ingestionId: string;
  why: Orphan;
  container: string;
  blobs: number;
  bytes: number;
  sample: string[];
  createdAt: string;
}

export interface RecoveryReport {
  generatedAt: string;
  prefix: string;
  generation: Generation | null;
  containers: string[];
  scanned: { blobs: number; jobManifests: number; ingestionIds: number };
  jobs: OrphanJobOutput[];
  ingestions: OrphanIngestionOutput[];
}

const INGESTION_IN_NAME = /(ing-([0-9a-z]{9})-[0-9a-f]{8})/;

function classify(createdAt: number | undefined, ttlSeconds: number, now: number): Orphan {
  if (createdAt === undefined) return 'lost-or-expired';
  return now - createdAt < ttlSeconds * 1000 ? 'lost' : 'expired';
}

/**
 * Outputs in storage whose records Redis no longer holds: job output sets (found by their manifests) and
 * ingestion shards (found by the ingestion id in their names). After Redis lost its data these are the work
 * that was done and paid for but that no route will ever point at again; the report lets an operator hand
 * them back to their owners or delete them, instead of leaving them silent.
 */
export async function recoveryReport(opts: {
  redis: Redis;
  prefix: string;
  blob: BlobServiceClient;
  /** Containers to scan; every container of the account when absent. */
  containers?: string[];
  /** JOB_TTL_S: records younger than this should exist; older ones expired by design. */
  recordTtlSeconds: number;
  now?: number;
}): Promise<RecoveryReport> {
  const { redis, prefix, blob, recordTtlSeconds } = opts;
  const now = opts.now ?? Date.now();
  const containers: string[] = opts.containers ?? [];
  if (!opts.containers) for await (const c of blob.listContainers()) containers.push(c.name);
  const report: RecoveryReport = {
    generatedAt: new Date(now).toISOString(),
    prefix,
    generation: (await readGeneration(redis, prefix)) ?? null,
    containers,
    scanned: { blobs: 0, jobManifests: 0, ingestionIds: 0 },
    jobs: [],
    ingestions: [],
  };
  for (const name of containers) {
    const container = blob.getContainerClient(name);
    const ingestions = new Map<string, { blobs: number; bytes: number; sample: string[] }>();
    for await (const item of container.listBlobsFlat()) {
      report.scanned.blobs++;
      const ing = INGESTION_IN_NAME.exec(item.name);
      if (ing) {
        const entry = ingestions.get(ing[1]!) ?? { blobs: 0, bytes: 0, sample: [] };
        entry.blobs++;
        entry.bytes += item.properties.contentLength ?? 0;
        if (entry.sample.length < 3) entry.sample.push(item.name);
        ingestions.set(ing[1]!, entry);
        continue;
      }
      if (!item.name.endsWith('.manifest.json')) continue;
      let manifest: JobVectorsManifest;
      try {
        const buf = await container.getBlobClient(item.name).downloadToBuffer();
        manifest = JSON.parse(buf.toString('utf8')) as JobVectorsManifest;
      } catch {
        continue;
      }
      if (manifest.format !== 'embedpool.job-vectors' || typeof manifest.jobId !== 'string') continue;
      report.scanned.jobManifests++;
      if ((await redis.exists(jobKeys.record(prefix, manifest.jobId))) === 1) continue;
      const created = uuidV7Time(manifest.jobId);
      report.jobs.push({
        jobId: manifest.jobId,
        why: classify(created, recordTtlSeconds, now),
        container: name,
        manifest: item.name,
        files: Object.values(manifest.files ?? {}).map((f) => f!.name),
        model: manifest.model,
        dim: manifest.dim,
        count: manifest.count,
        failed: manifest.failed,
        ...(created === undefined ? {} : { createdAt: new Date(created).toISOString() }),
      });
    }
    for (const [id, entry] of ingestions) {
      report.scanned.ingestionIds++;
      if ((await redis.exists(ingestKeys.record(prefix, id))) === 1) continue;
      const created = Number.parseInt(INGESTION_IN_NAME.exec(id)![2]!, 36);
      report.ingestions.push({
        ingestionId: id,
        why: classify(created, recordTtlSeconds, now),
        container: name,
        ...entry,
        createdAt: new Date(created).toISOString(),
      });
    }
  }
  return report;
}
