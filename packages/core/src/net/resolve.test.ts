// The pinned lookup and resolver error mapping: no DNS, no sockets.
import type { LookupAddress } from 'node:dns';
import { describe, expect, it } from 'vitest';
import { pinnedLookup, resolveHost } from './resolve';

function lookupOnce(
  fn: ReturnType<typeof pinnedLookup>,
  hostname: string,
  options: { all?: boolean; family?: number },
): Promise<{ err: NodeJS.ErrnoException | null; address: string | LookupAddress[]; family?: number }> {
  return new Promise((resolve) =>
    fn(hostname, options, (err, address, family) => resolve({ err, address, family })),
  );
}

describe('pinnedLookup', () => {
  const lookup = pinnedLookup('Images.Test', ['127.0.0.2', '::1']);

  it('answers the pinned host with the pinned addresses only', async () => {
    expect(await lookupOnce(lookup, 'images.test', { all: true })).toMatchObject({
      err: null,
      address: [
        { address: '127.0.0.2', family: 4 },
        { address: '::1', family: 6 },
      ],
    });
    expect(await lookupOnce(lookup, 'images.test', {})).toMatchObject({ address: '127.0.0.2', family: 4 });
    expect(await lookupOnce(lookup, 'images.test', { family: 6 })).toMatchObject({
      address: '::1',
      family: 6,
    });
  });

  it('refuses any other host name instead of asking DNS', async () => {
    const { err } = await lookupOnce(lookup, 'other.test', { all: true });
    expect(err?.code).toBe('ENOTFOUND');
  });
});

describe('resolveHost', () => {
  it('deduplicates answers', async () => {
    const resolver = async () => [
      { address: '8.8.8.8', family: 4 },
      { address: '8.8.8.8', family: 4 },
    ];
    expect(await resolveHost('x.test', resolver)).toEqual(['8.8.8.8']);
  });

  it('gives up when the signal aborts, with its reason', async () => {
    const controller = new AbortController();
    const pending = resolveHost('slow.test', () => new Promise(() => {}), controller.signal);
    controller.abort(new Error('deadline'));
    await expect(pending).rejects.toThrow('deadline');
  });
});
