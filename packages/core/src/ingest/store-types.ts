/** What the IngestionStore takes and answers for a planner page and a chunk's outcome. */
import type {
  BlobFailure,
  CreateIngestionRequest,
  IngestionError,
  IngestionState,
  PlanCheckpoint,
} from './schemas';

export interface ChunkContext {
  id: string;
  state: IngestionState;
  round: number;
  request: CreateIngestionRequest;
  run: number;
  outputKey: string;
  cancelRequested: boolean;
}

export type CheckpointStatus = 'ok' | 'conflict' | 'stale' | 'done' | 'missing';
export type CommitStatus = 'ok' | 'dup' | 'stale' | 'missing';

export interface PageCheckpoint {
  round: number;
  page: number;
  checkpoint: PlanCheckpoint;
  planned: number;
  discovered?: number;
  skipped?: number;
  queued?: number;
  missing?: number;
  listingDone?: boolean;
  carried?: BlobFailure[];
  /** Failures of this run found while planning (bad manifest lines): counted as failed, not carried. */
  failures?: BlobFailure[];
  error?: IngestionError;
  /**
   * A retry round stopping early puts the failures it did not queue back: the snapshot's names from `name`
   * on (all of them without a name).
   */
  restoreFrom?: { name?: string; inclusive?: boolean };
}

export interface ChunkOutcome {
  round: number;
  seq: number;
  blobs: number;
  done: number;
  bytes: number;
  /** The chunk left a shard or an index file (rows or permanent failures). */
  written: boolean;
  cancelled: boolean;
  failures: BlobFailure[];
  /** Wake the planner when this few chunks (or fewer) remain queued. */
  wakeBelow: number;
  chunk: string;
}
