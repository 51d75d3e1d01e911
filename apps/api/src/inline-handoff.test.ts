import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HANDOFF_TOKEN_HEADER, inlineKey } from '@embedpool/core/queue';
import { readyRedis } from '@embedpool/testkit';
import express from 'express';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InlineHandoff } from './inline-handoff';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const png = Buffer.from('89504e470d0a1a0a-not-really', 'utf8');
const jpg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]);

describe('InlineHandoff', () => {
  const prefix = `t-handoff-${randomUUID().slice(0, 8)}`;
  let redis: Redis;
  let server: Server;
  let base: string;
  let handoff: InlineHandoff;

  beforeAll(async () => {
    redis = await readyRedis(REDIS_URL);
    handoff = new InlineHandoff(redis, prefix);
    const app = express();
    app.use(handoff.router());
    server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    const left = await redis.keys(`${prefix}:*`);
    if (left.length) await redis.del(...left);
    redis.disconnect();
    server.close();
  });

  it('keeps URLs as they are and sends nothing when no image is inline', async () => {
    const refs = [{ kind: 'url' as const, url: 'https://example.test/a.jpg' }];
    expect(await handoff.stage('none', refs, 10)).toEqual({ images: refs });
  });

  it('without a reachable address, puts the raw bytes in one Redis key and deletes it on release', async () => {
    const id = randomUUID();
    const staged = await handoff.stage(
      id,
      [
        { kind: 'base64', data: png.toString('base64') },
        { kind: 'url', url: 'https://example.test/b.jpg' },
        { kind: 'base64', data: jpg.toString('base64url') },
      ],
      10,
    );
    expect(staged.inline).toEqual({ via: 'redis', key: inlineKey(prefix, id) });
    expect(staged.images[1]).toEqual({ kind: 'url', url: 'https://example.test/b.jpg' });
    const stored = await redis.getBuffer(inlineKey(prefix, id));
    expect(stored).toEqual(Buffer.concat([png, jpg]));
    expect(staged.images[2]).toEqual({ kind: 'inline', offset: png.length, length: jpg.length });
    await handoff.release(id, staged.inline);
    expect(await redis.exists(inlineKey(prefix, id))).toBe(0);
  });

  it('once bound, holds the bytes for workers that bring the job secret, until release', async () => {
    handoff.useBoundAddress(base);
    expect(handoff.mode).toBe('api');
    const id = randomUUID();
    const staged = await handoff.stage(id, [{ kind: 'base64', data: jpg.toString('base64') }], 10);
    const source = staged.inline!;
    if (source.via !== 'api') throw new Error('expected an api source');
    expect(source.url).toBe(`${base}/internal/inline/${id}`);
    expect(await redis.exists(inlineKey(prefix, id))).toBe(0);

    const ok = await fetch(source.url, { headers: { [HANDOFF_TOKEN_HEADER]: source.token } });
    expect(ok.status).toBe(200);
    expect(Buffer.from(await ok.arrayBuffer())).toEqual(jpg);
    expect((await fetch(source.url)).status).toBe(404);
    expect(
      (await fetch(source.url, { headers: { [HANDOFF_TOKEN_HEADER]: `${source.token}x` } })).status,
    ).toBe(404);
    await handoff.release(id, source);
    expect((await fetch(source.url, { headers: { [HANDOFF_TOKEN_HEADER]: source.token } })).status).toBe(404);
    expect(handoff.holding).toBe(0);
  });
});
