import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readyRedis } from '@embedpool/testkit';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deleteInline,
  HANDOFF_TOKEN_HEADER,
  InlineReader,
  inlineKey,
  packBase64,
  packImages,
  storeInline,
  tokenMatches,
} from './inline-images';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

const images = [Buffer.from('first image'), Buffer.from([0, 1, 2, 255]), Buffer.from('third')];

describe('inline images', () => {
  const prefix = `t-inline-${randomUUID().slice(0, 8)}`;
  let redis: Redis;
  let server: Server;
  let url: string;
  const token = 'a-secret-of-at-least-16-chars';
  const { buffer, refs } = packImages(images);

  beforeAll(async () => {
    redis = await readyRedis(REDIS_URL);
    server = createServer((req, res) => {
      if (req.headers[HANDOFF_TOKEN_HEADER] !== token) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(buffer);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/internal/inline/x`;
  });
  afterAll(async () => {
    const left = await redis.keys(`${prefix}:*`);
    if (left.length) await redis.del(...left);
    redis.disconnect();
    await new Promise((r) => server.close(r));
  });

  it('packs images back to back and names each slice', () => {
    expect(buffer.byteLength).toBe(images.reduce((n, b) => n + b.byteLength, 0));
    refs.forEach((ref, i) => {
      expect(ref.kind).toBe('inline');
      expect(buffer.subarray(ref.offset, ref.offset + ref.length)).toEqual(images[i]);
    });
  });

  it('packs base64 images (either alphabet, padded or not) as packImages packs their bytes', () => {
    const b64 = [
      images[0]!.toString('base64'),
      images[1]!.toString('base64url'),
      images[2]!.toString('base64').replace(/=+$/, ''),
    ];
    const packed = packBase64(b64);
    expect(packed.buffer.equals(buffer)).toBe(true);
    expect(packed.refs).toEqual(refs);
  });

  it('reads each image back from one binary Redis key, and nothing once it is deleted', async () => {
    const source = await storeInline(redis, prefix, 'job-1', buffer, 60);
    expect(source).toEqual({ via: 'redis', key: inlineKey(prefix, 'job-1') });
    expect(await redis.ttl(inlineKey(prefix, 'job-1'))).toBeGreaterThan(0);
    const reader = new InlineReader(source, redis, { timeoutMs: 2_000 });
    for (const [i, ref] of refs.entries()) {
      expect(Buffer.from((await reader.read(ref)).bytes)).toEqual(images[i]);
    }
    await deleteInline(redis, source);
    expect(await redis.exists(inlineKey(prefix, 'job-1'))).toBe(0);
    await expect(new InlineReader(source, redis, { timeoutMs: 2_000 }).read(refs[0]!)).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
  });

  it('fetches the images once from the API that holds them, with the job secret', async () => {
    const reader = new InlineReader({ via: 'api', url, token }, redis, { timeoutMs: 2_000 });
    const got = await Promise.all(refs.map((r) => reader.read(r)));
    got.forEach((g, i) => expect(Buffer.from(g.bytes)).toEqual(images[i]));
    const wrong = new InlineReader({ via: 'api', url, token: 'not-the-secret-at-all' }, redis, {
      timeoutMs: 2_000,
    });
    await expect(wrong.read(refs[0]!)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('refuses an inline ref without a source, and compares secrets in full', async () => {
    await expect(
      new InlineReader(undefined, redis, { timeoutMs: 1_000 }).read(refs[0]!),
    ).rejects.toMatchObject({
      code: 'BAD_REQUEST',
    });
    expect(tokenMatches(token, token)).toBe(true);
    expect(tokenMatches(token, `${token}x`)).toBe(false);
    expect(tokenMatches(token, token.slice(0, -1))).toBe(false);
    expect(tokenMatches(token, undefined)).toBe(false);
  });
});
