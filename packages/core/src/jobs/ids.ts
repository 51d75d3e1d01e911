import { randomBytes } from 'node:crypto';
import { uuidV7Time } from '../queue/generation';

/**
 * Job ids are UUIDv7 (RFC 9562): random enough to be unguessable, and carrying their creation time, so that
 * after Redis lost its data a missing id minted before the loss can be answered as lost (410) rather than
 * unknown (404). Written here rather than taken from the `uuid` package: the compiled images bundle core,
 * and an older `uuid` hoisted by other dependencies would be the one they resolve.
 */
export function newJobId(now = Date.now()): string {
  const b = randomBytes(16);
  b.writeUIntBE(now, 0, 6); // 48-bit big-endian Unix milliseconds
  b[6] = (b[6]! & 0x0f) | 0x70; // version 7
  b[8] = (b[8]! & 0x3f) | 0x80; // RFC 9562 variant
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** When a job id was minted (ms since the epoch); undefined for ids from before v7 ids (UUIDv4). */
export function jobIdTime(id: string): number | undefined {
  return uuidV7Time(id);
}
