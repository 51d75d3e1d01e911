import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, PrivateRedis } from './private-redis';

/**
 * A throw-away Redis Cluster of masters on loopback for tests: `redis-server --cluster-enabled yes` per
 * node (each with its own directory, so nodes.conf and the append-only file survive a restart) joined by
 * `redis-cli --cluster create`. AOF with fsync on every write, so a node killed with -9 comes back with
 * every acknowledged write, as a node with a replica would after a failover.
 */
export class PrivateRedisCluster {
  private constructor(
    readonly nodes: PrivateRedis[],
    private readonly dir: string,
  ) {}

  static async start(size = 3): Promise<PrivateRedisCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'embedpool-cluster-'));
    const nodes: PrivateRedis[] = [];
    try {
      for (let i = 0; i < size; i++) {
        const port = await freePort();
        const nodeDir = join(dir, String(port));
        mkdirSync(nodeDir);
        const node = new PrivateRedis(port, [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf',
          '--cluster-node-timeout',
          '2000',
          '--dir',
          nodeDir,
          '--appendonly',
          'yes',
          '--appendfsync',
          'always',
          '--maxmemory-policy',
          'noeviction',
        ]);
        await node.start();
        nodes.push(node);
      }
      const cli = spawn(
        'redis-cli',
        [
          '--cluster',
          'create',
          ...nodes.map((n) => `127.0.0.1:${n.port}`),
          '--cluster-replicas',
          '0',
          '--cluster-yes',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      cli.stdout.on('data', (c: Buffer) => {
        out += c.toString();
      });
      cli.stderr.on('data', (c: Buffer) => {
        out += c.toString();
      });
      const [code] = (await once(cli, 'exit')) as [number];
      if (code !== 0) throw new Error(`redis-cli --cluster create failed (${code}):\n${out}`);
      const cluster = new PrivateRedisCluster(nodes, dir);
      await cluster.waitHealthy();
      return cluster;
    } catch (err) {
      for (const n of nodes) await n.kill();
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** REDIS_URL for REDIS_CLUSTER=true: every node, comma-separated. */
  get url(): string {
    return this.nodes.map((n) => n.url).join(',');
  }

  /** The node serving a key's slot (by asking one of them). */
  async nodeFor(key: string): Promise<PrivateRedis> {
    const { Redis } = await import('ioredis');
    const r = new Redis(this.nodes[0]!.url, { maxRetriesPerRequest: 0 });
    r.on('error', () => {});
    try {
      const slot = (await r.call('CLUSTER', 'KEYSLOT', key)) as number;
      const ranges = (await r.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
      const owner = ranges.find(([from, to]) => slot >= from && slot <= to);
      const node = this.nodes.find((n) => n.port === owner?.[2][1]);
      if (!node) throw new Error(`no node owns slot ${slot}`);
      return node;
    } finally {
      r.disconnect();
    }
  }

  /** Resolves once every node reports cluster_state:ok (after create, or after a node came back). */
  async waitHealthy(timeoutMs = 20_000): Promise<void> {
    const { Redis } = await import('ioredis');
    const deadline = Date.now() + timeoutMs;
    for (const node of this.nodes) {
      const r = new Redis(node.url, { maxRetriesPerRequest: 0, retryStrategy: () => 100 });
      r.on('error', () => {});
      try {
        for (;;) {
          const info = (await r.call('CLUSTER', 'INFO').catch(() => '')) as string;
          if (info.includes('cluster_state:ok')) break;
          if (Date.now() > deadline) throw new Error(`cluster not healthy on ${node.port}: ${info}`);
          // Polling a state change inside another process; there is no event to await.
          await new Promise((res) => setTimeout(res, 100));
        }
      } finally {
        r.disconnect();
      }
    }
  }

  async stop(): Promise<void> {
    for (const n of this.nodes) await n.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
