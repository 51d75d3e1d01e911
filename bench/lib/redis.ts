import { createHash, randomUUID } from 'node:crypto';
import { freePort, PrivateRedis } from '@embedpool/testkit';
import { Redis } from 'ioredis';
import { round } from './stats';

// The testkit's (a kernel-picked loopback port), re-exported for the bench's other modules.
export { freePort, PrivateRedis };

/** A redis-server of the bench's own (the testkit's), so its counters see only the bench's traffic. */
export async function startBenchRedis(): Promise<PrivateRedis> {
  return PrivateRedis.start(['--maxmemory-policy', 'noeviction']);
}

export interface RedisCounters {
  /** Calls per command name, including the commands Lua scripts run (Redis counts those too). */
  calls: Record<string, number>;
  netInputBytes: number;
  netOutputBytes: number;
  usedMemoryBytes: number;
}

const OWN = new Set(['info', 'monitor', 'config|resetstat', 'ping', 'client|setname', 'client|getname']);

function parseInfo(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

/** A connection for the bench's own questions: INFO never goes through the service's connections. */
export class RedisProbe {
  readonly redis: Redis;
  private ownBytes = 0;

  constructor(url: string) {
    this.redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
    this.redis.on('error', () => {});
  }

  async counters(): Promise<RedisCounters> {
    const cs = await this.redis.info('commandstats');
    const stats = await this.redis.info('stats');
    const mem = await this.redis.info('memory');
    const calls: Record<string, number> = {};
    for (const [k, v] of parseInfo(cs)) {
      const name = k.replace(/^cmdstat_/, '');
      if (OWN.has(name)) continue;
      calls[name] = Number(/calls=(\d+)/.exec(v)?.[1] ?? 0);
    }
    const s = parseInfo(stats);
    // Our own INFO replies are output bytes too; they are known, so they are taken out.
    this.ownBytes += cs.length + stats.length + mem.length;
    return {
      calls,
      netInputBytes: Number(s.get('total_net_input_bytes') ?? 0),
      netOutputBytes: Number(s.get('total_net_output_bytes') ?? 0) - this.ownBytes,
      usedMemoryBytes: Number(parseInfo(mem).get('used_memory') ?? 0),
    };
  }

  close(): void {
    this.redis.disconnect();
  }
}

export interface RedisDelta {
  seconds: number;
  /** Every command Redis executed, including those inside Lua scripts (BullMQ works in scripts). */
  commands: number;
  byCommand: Record<string, number>;
  netInputBytes: number;
  netOutputBytes: number;
  usedMemoryBytesAtEnd: number;
}

export function redisDelta(a: RedisCounters, b: RedisCounters, seconds: number): RedisDelta {
  const byCommand: Record<string, number> = {};
  let commands = 0;
  for (const [name, calls] of Object.entries(b.calls)) {
    const d = calls - (a.calls[name] ?? 0);
    if (d > 0) {
      byCommand[name] = d;
      commands += d;
    }
  }
  return {
    seconds: round(seconds, 2),
    commands,
    byCommand: Object.fromEntries(Object.entries(byCommand).sort((x, y) => y[1] - x[1])),
    netInputBytes: b.netInputBytes - a.netInputBytes,
    netOutputBytes: b.netOutputBytes - a.netOutputBytes,
    usedMemoryBytesAtEnd: b.usedMemoryBytes,
  };
}

export interface MonitorCount {
  /** Commands clients sent over the network: the round trips. */
  client: Record<string, number>;
  /** Commands run inside Lua scripts (EVALSHA bodies): no round trip of their own. */
  lua: Record<string, number>;
}

/**
 * A key without its deployment prefix and ids (`bench-1a2b3c4d:result:<uuid>` -> `result:*`), so commands
 * group by what they touch: the backlog HSET apart from the heartbeat's.
 */
export function keyClass(key: string): string {
  return key
    .replace(/^bench-[0-9a-f]{8}:/, '')
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '*')
    .replace(/:\d+(?=:|$)/g, ':*');
}

/** BullMQ's Lua scripts by SHA1 (what EVALSHA names), so a count can say which script ran. */
export async function bullmqScriptNames(): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  try {
    const scripts = (await import('bullmq/dist/esm/scripts/index.js')) as unknown as Record<
      string,
      { name: string; content: string }
    >;
    for (const s of Object.values(scripts)) {
      if (s && typeof s.content === 'string') {
        names.set(createHash('sha1').update(s.content).digest('hex'), s.name);
      }
    }
  } catch {
    // Counted by SHA instead.
  }
  return names;
}

/**
 * Splits commands into client-sent and script-run with MONITOR (which marks script commands "lua").
 * Segments end on a sentinel (an ECHO of a fresh token): MONITOR's feed lags the commands, so a count
 * taken "now" would miss the last ones.
 */
export class RedisMonitor {
  private monitor: Redis | undefined;
  private marker: Redis | undefined;
  private count: MonitorCount = { client: {}, lua: {} };
  private waiting: { token: string; resolve: () => void } | undefined;
  private scripts = new Map<string, string>();

  static async start(url: string): Promise<RedisMonitor> {
    const m = new RedisMonitor();
    m.scripts = await bullmqScriptNames();
    const client = new Redis(url, { lazyConnect: false });
    client.on('error', () => {});
    m.monitor = await client.monitor();
    client.disconnect();
    m.marker = new Redis(url, { lazyConnect: false });
    m.marker.on('error', () => {});
    m.monitor.on('monitor', (_time: string, args: string[], source: string) => {
      let name = String(args[0] ?? '').toLowerCase();
      if (name === 'echo' && m.waiting && args[1] === m.waiting.token) {
        m.waiting.resolve();
        return;
      }
      if (OWN.has(name) || name === 'echo') return;
      if (name === 'evalsha') {
        name = `evalsha ${m.scripts.get(String(args[1])) ?? String(args[1]).slice(0, 8)}`;
      } else if (name === 'eval') {
        const body = String(args[1] ?? '');
        name = `eval inline-script-${createHash('sha1').update(body).digest('hex').slice(0, 8)}`;
      } else if (source !== 'lua' && args.length > 1) {
        // The key: the first argument that looks like one (XREAD's come after BLOCK/COUNT/STREAMS).
        const key = args.slice(1).find((a) => String(a).includes(':'));
        if (key !== undefined) name = `${name} ${keyClass(String(key))}`;
      }
      const bucket = source === 'lua' ? m.count.lua : m.count.client;
      bucket[name] = (bucket[name] ?? 0) + 1;
    });
    return m;
  }

  /** Counts up to now (every command Redis ran before the sentinel), then starts over. */
  async take(): Promise<MonitorCount> {
    const token = `bench-mark-${randomUUID()}`;
    const seen = new Promise<void>((resolve) => {
      this.waiting = { token, resolve };
    });
    await this.marker!.echo(token);
    await seen;
    this.waiting = undefined;
    const c = this.count;
    this.count = { client: {}, lua: {} };
    return c;
  }

  stop(): void {
    this.monitor?.disconnect();
    this.marker?.disconnect();
  }
}

export const sumCounts = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
