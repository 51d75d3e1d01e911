/**
 * Test helpers for the net module: loopback listeners that count connections, a resolver that only
 * knows the names a test gives it, and a DNS tripwire. Nothing here can reach a non-loopback address.
 */
import dns from 'node:dns';
import http from 'node:http';
import net, { type AddressInfo, isIP, type LookupFunction, type Socket } from 'node:net';
import type { ResolvedAddress, Resolver } from '@embedpool/core/net';

export interface LoopbackServer {
  readonly host: string;
  readonly port: number;
  /** Connections accepted since start. */
  readonly connections: number;
  /** Accepted connections not yet closed. */
  readonly openSockets: number;
  url(path?: string): string;
  /** Resolves once every accepted connection has closed; rejects after `ms`. */
  idle(ms?: number): Promise<void>;
  close(): Promise<void>;
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1)$/;

/** Starts a node:http server on a loopback address (refuses any other) that counts its connections. */
export async function startLoopbackServer(
  host: string,
  handler: http.RequestListener,
  port = 0,
): Promise<LoopbackServer> {
  if (!LOOPBACK.test(host)) throw new Error(`test servers listen on loopback only, not ${host}`);
  const server = http.createServer(handler);
  const sockets = new Set<Socket>();
  let connections = 0;
  let waiters: (() => void)[] = [];
  server.on('connection', (socket) => {
    connections++;
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      if (sockets.size === 0) {
        for (const wake of waiters) wake();
        waiters = [];
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, ipv6Only: host === '::1' }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    host,
    port: bound,
    get connections() {
      return connections;
    },
    get openSockets() {
      return sockets.size;
    },
    url: (path = '/') => `http://${urlHost}:${bound}${path}`,
    idle(ms = 2000) {
      if (sockets.size === 0) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${sockets.size} connection(s) still open`)), ms);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
    close() {
      server.closeAllConnections();
      return new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

type Answer = string[] | ((call: number) => string[]);

/**
 * A resolver that answers only the names in `table` (a list of addresses, or a function of the
 * 1-based call count for that name) and counts calls. Unknown names fail with ENOTFOUND.
 */
export function fakeResolver(table: Record<string, Answer>): Resolver & { calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const resolver = async (host: string): Promise<ResolvedAddress[]> => {
    const call = (calls.get(host) ?? 0) + 1;
    calls.set(host, call);
    const answer = table[host];
    if (!answer) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    const list = typeof answer === 'function' ? answer(call) : answer;
    return list.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return Object.assign(resolver, { calls });
}

/**
 * Replaces dns.lookup (used by net.connect when no lookup is given) with one that refuses every
 * name (IP literals pass through: they involve no query), so a broken pin can never send a DNS query off the machine. Returns the restore function.
 */
export function installDnsTripwire(): { restore(): void; trips: string[] } {
  const original = dns.lookup;
  const trips: string[] = [];
  const tripwire = (hostname: string, ...rest: unknown[]) => {
    // IP literals never leave the process (server.listen looks them up too).
    if (isIP(hostname) !== 0) return (original as (...args: unknown[]) => void)(hostname, ...rest);
    trips.push(hostname);
    const callback = rest.find((a) => typeof a === 'function') as ((err: Error) => void) | undefined;
    const err = Object.assign(new Error(`DNS tripwire: lookup of ${hostname} refused in tests`), {
      code: 'EAI_FAIL',
    });
    process.nextTick(() => callback?.(err));
  };
  dns.lookup = tripwire as unknown as typeof dns.lookup;
  return {
    trips,
    restore() {
      dns.lookup = original;
    },
  };
}

const LOOPBACK_ADDRESS = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i;

function loopbackOnly(addresses: unknown): boolean {
  const list = Array.isArray(addresses) ? addresses.map((a: { address: string }) => a.address) : [addresses];
  return list.every((a) => typeof a === 'string' && LOOPBACK_ADDRESS.test(a));
}

/**
 * Wraps net.Socket#connect (which tls.connect uses too) so that every TCP connection this process
 * attempts must target a loopback address: an IP-literal host is checked before connecting, and a
 * host name's lookup answers are checked before the socket may use them. A violation destroys the
 * socket with an error and is recorded in `violations`; nothing is sent.
 */
export function installConnectTripwire(): { restore(): void; violations: string[] } {
  const proto = net.Socket.prototype;
  const original = proto.connect;
  const violations: string[] = [];
  const refuse = (socket: Socket, target: string) => {
    violations.push(target);
    const err = Object.assign(new Error(`connect tripwire: ${target} is not loopback`), {
      code: 'ETRIPWIRE',
    });
    process.nextTick(() => socket.destroy(err));
    return socket;
  };
  proto.connect = function (this: Socket, ...args: unknown[]) {
    const first = args[0];
    // net.connect passes [options, callback] tagged with an internal symbol; keep the tag.
    const normalized = Array.isArray(first) ? first : undefined;
    const options = (normalized ? normalized[0] : first) as Record<string, unknown> | number | string;
    if (typeof options !== 'object' || options === null) {
      const host = typeof args[1] === 'string' ? args[1] : 'localhost';
      if (!loopbackOnly(host)) return refuse(this, host);
      return (original as (...a: unknown[]) => Socket).apply(this, args);
    }
    if (typeof options.path === 'string') return (original as (...a: unknown[]) => Socket).apply(this, args);
    const host = typeof options.host === 'string' ? options.host : 'localhost';
    if (isIP(host) !== 0) {
      if (!loopbackOnly(host)) return refuse(this, host);
      return (original as (...a: unknown[]) => Socket).apply(this, args);
    }
    const inner = (options.lookup as LookupFunction | undefined) ?? (dns.lookup as unknown as LookupFunction);
    const checked: LookupFunction = (hostname, opts, callback) =>
      inner(hostname, opts, (err, address, family) => {
        if (!err && !loopbackOnly(address)) {
          violations.push(`${hostname} -> ${JSON.stringify(address)}`);
          callback(
            Object.assign(new Error(`connect tripwire: ${hostname} resolved off loopback`), {
              code: 'ETRIPWIRE',
            }),
            '',
          );
        } else callback(err, address, family);
      });
    const patched = { ...options, lookup: checked };
    let nextArgs: unknown[];
    if (normalized) {
      const copy: unknown[] = [patched, ...normalized.slice(1)];
      for (const sym of Object.getOwnPropertySymbols(normalized)) {
        (copy as unknown as Record<symbol, unknown>)[sym] = (
          normalized as unknown as Record<symbol, unknown>
        )[sym];
      }
      nextArgs = [copy, ...args.slice(1)];
    } else {
      nextArgs = [patched, ...args.slice(1)];
    }
    return (original as (...a: unknown[]) => Socket).apply(this, nextArgs);
  } as typeof proto.connect;
  return {
    violations,
    restore() {
      proto.connect = original;
    },
  };
}
