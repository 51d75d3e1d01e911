/**
 * Name resolution: the system resolver, error mapping to URL_DNS_FAILED, and the pinned `lookup`
 * handed to the socket so that it connects to the addresses already checked and never asks DNS again.
 */
import type { LookupAddress } from 'node:dns';
import { lookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { EmbedpoolError } from '../errors';

export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Resolves a host name to every address it has. Tests inject one; production uses `systemResolver`. */
export type Resolver = (host: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = (host) => lookup(host, { all: true, order: 'verbatim' });

/** Rejects with the signal's reason as soon as it aborts (the resolver itself cannot be cancelled). */
function raceSignal<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** Every address `host` resolves to (as the resolver spelled them); URL_DNS_FAILED when there are none. */
export async function resolveHost(host: string, resolver: Resolver, signal?: AbortSignal): Promise<string[]> {
  let answers: ResolvedAddress[];
  try {
    answers = await raceSignal(resolver(host), signal);
  } catch (err) {
    if (signal?.aborted || err instanceof EmbedpoolError) throw err;
    const code = err && typeof err === 'object' && 'code' in err ? String(err.code) : undefined;
    throw new EmbedpoolError('URL_DNS_FAILED', `could not resolve ${host}${code ? ` (${code})` : ''}`, {
      cause: err,
      details: { host, code },
    });
  }
  if (!Array.isArray(answers) || answers.length === 0) {
    throw new EmbedpoolError('URL_DNS_FAILED', `${host} has no addresses`, { details: { host } });
  }
  return [...new Set(answers.map((a) => a.address))];
}

function notFound(hostname: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`pinned lookup has no address for ${hostname}`), { code: 'ENOTFOUND' });
}

/**
 * A `lookup` for `net.connect` / `tls.connect` that answers only `host` and only with `addresses`
 * (already checked against the policy). The socket still gets the host name, so TLS SNI and
 * certificate checks use it, but no second DNS query happens: DNS rebinding has nothing to rebind.
 */
export function pinnedLookup(host: string, addresses: readonly string[]): LookupFunction {
  const expected = bare(host);
  const pinned: LookupAddress[] = addresses.map((address) => ({ address, family: isIP(address) }));
  return (hostname, options, callback) => {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : (options.family ?? 0);
    const matches =
      bare(hostname) === expected
        ? pinned.filter((a) => a.family !== 0 && (family === 0 || a.family === family))
        : [];
    const first = matches[0];
    process.nextTick(() => {
      if (!first) callback(notFound(hostname), '');
      else if (options.all) callback(null, matches);
      else callback(null, first.address, first.family);
    });
  };
}

function bare(host: string): string {
  return host.replace(/^\[|\]$/g, '').toLowerCase();
}
