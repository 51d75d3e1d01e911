import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config';
import { ingestionKeys, ingestKeys } from '../ingest/names';
import { jobKeys } from '../jobs/job-store';
import { hashTagged, keys } from './names';

/** The slot Redis Cluster hashes a key to is decided by its first `{...}` (the hash tag) when there is one. */
function hashTag(key: string): string | undefined {
  const open = key.indexOf('{');
  const close = key.indexOf('}', open + 1);
  return open >= 0 && close > open + 1 ? key.slice(open + 1, close) : undefined;
}

describe('one hash tag for every key of a deployment', () => {
  const prefix = loadConfig({ QUEUE_PREFIX: 'fleet-a' }).QUEUE_PREFIX;

  it('keeps a tag as it is and wraps a bare prefix', () => {
    expect(hashTagged('fleet-a')).toBe('{fleet-a}');
    expect(hashTagged('{fleet-a}')).toBe('{fleet-a}');
  });

  it("gives the project's own keys and BullMQ's the same tag", () => {
    const all = [
      keys.result(prefix, 'j'),
      keys.workers(prefix),
      keys.workerInfo(prefix),
      keys.cancelled(prefix, 'j'),
      keys.backlog(prefix),
      ...Object.values(jobKeys).map((k) => k(prefix, 'owner', 'key')),
      ...ingestionKeys(prefix, 'ing-1', 2),
      ingestKeys.all(prefix),
      ingestKeys.outputLock(prefix, 'abc'),
      // BullMQ's keys are `<prefix>:<queue>:<suffix>`.
      `${prefix}:embed:wait`,
      `${prefix}:ingest-chunks:meta`,
    ];
    for (const key of all) expect(hashTag(key), key).toBe('fleet-a');
  });
});
