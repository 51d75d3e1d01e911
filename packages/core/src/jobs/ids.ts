import { v7 } from 'uuid';
import { uuidV7Time } from '../queue/generation';

/**
 * Job ids are UUIDv7: random enough to be unguessable, and carrying their creation time, so that after Redis
 * lost its data a missing id minted before the loss can be answered as lost (410) rather than unknown (404).
 */
export function newJobId(): string {
  return v7();
}

/** When a job id was minted (ms since the epoch); undefined for ids from before v7 ids (UUIDv4). */
export function jobIdTime(id: string): number | undefined {
  return uuidV7Time(id);
}
