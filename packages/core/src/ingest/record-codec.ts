/**
 * How an ingestion record is kept in its Redis hash: one field per part, so writers (planner, chunks,
 * finalizer, API) never clobber each other; objects as JSON, numbers and flags as strings.
 */
import { type IngestionRecord, ingestionRecordSchema } from './schemas';

const JSON_FIELDS = ['request', 'checkpoint', 'baseIndex', 'error', 'callback', 'retrying'] as const;
const BOOL_FIELDS = ['listingDone', 'cancelRequested', 'plannerParked'] as const;
const NUMBER_FIELDS = [
  'createdAt',
  'startedAt',
  'finishedAt',
  'updatedAt',
  'round',
  'run',
  'dim',
  'planned',
  'committed',
  'finalizedRound',
  'discovered',
  'skipped',
  'queued',
  'done',
  'failed',
  'carried',
  'cancelledBlobs',
  'missing',
  'bytes',
  'listCalls',
] as const;

/** The record from its hash (HGETALL); zod checks what came back. */
export function decodeIngestionRecord(hash: Record<string, string>): IngestionRecord {
  const raw: Record<string, unknown> = { ...hash };
  for (const f of JSON_FIELDS) if (hash[f] !== undefined && hash[f] !== '') raw[f] = JSON.parse(hash[f]);
  for (const f of JSON_FIELDS) if (hash[f] === '') delete raw[f];
  for (const f of NUMBER_FIELDS) if (hash[f] !== undefined) raw[f] = Number(hash[f]);
  for (const f of BOOL_FIELDS) raw[f] = hash[f] === '1';
  return ingestionRecordSchema.parse(raw);
}
