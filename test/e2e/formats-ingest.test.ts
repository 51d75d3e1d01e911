import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BlobServiceClient } from '@azure/storage-blob';
import { ingestSettingsFrom } from '@embedpool/core/ingest';
import { IMAGE_EXTENSIONS } from '@embedpool/core/preprocess';
import {
  cosine,
  encodeBmp,
  encodeDib,
  encodeIco,
  encodePnm,
  encodeTga,
  FORMATS_DIR,
} from '@embedpool/testkit';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  getJson,
  type IngestEvents,
  type IngestFixture,
  type IngestStack,
  postIngestion,
  readOutput,
  startIngestFixture,
} from './ingest-support';

/** Bulk ingestion of a container of every new format (phone photos, scans, icons), by their bytes. */

const fixture = (name: string) => readFileSync(join(FORMATS_DIR, name));

describe('bulk ingestion decodes the new formats', () => {
  let fx: IngestFixture;
  let blob: BlobServiceClient;
  let stack: IngestStack;
  let events: IngestEvents;
  const blobs = new Map<string, Uint8Array>();

  beforeAll(async () => {
    const { data, info } = await sharp(fixture('photo.png')).raw().toBuffer({ resolveWithObject: true });
    const photo = { width: info.width, height: info.height, channels: 3 as const, data };
    const heic = Buffer.from(fixture('photo.heic'));
    const ispe = heic.indexOf('ispe');
    heic.writeUInt32BE(100_000, ispe + 8);
    heic.writeUInt32BE(100_000, ispe + 12);
    const bmp = encodeBmp(photo, { bits: 24 });
    blobs.set('phone/IMG_0001.HEIC', fixture('photo.heic'));
    blobs.set('phone/IMG_0002.avif', fixture('photo.avif'));
    blobs.set('scans/page.jp2', fixture('photo.jp2'));
    blobs.set('scans/page.bmp', bmp);
    blobs.set('scans/page.ppm', encodePnm(photo, 6));
    blobs.set('scans/page.tga', encodeTga(photo, { type: 2, rle: true }));
    blobs.set(
      'icons/app.ico',
      encodeIco([{ width: 0, height: 0, bits: 32, data: encodeDib(photo, { bits: 32 }, 2) }]),
    );
    blobs.set('ref/photo.png', fixture('photo.png'));
    blobs.set('bad/absurd.heic', heic);
    blobs.set('bad/cut.bmp', bmp.subarray(0, bmp.length >> 1));
    blobs.set('notes/readme.txt', Buffer.from('not an image'));
    const env = { INGEST_CHUNK_SIZE: '4' };
    fx = await startIngestFixture({
      env: { LOG_LEVEL: 'warn', ...env },
      settings: ingestSettingsFrom(env),
      seed: async (b) => {
        const source = b.getContainerClient('uploads');
        await source.createIfNotExists();
        for (const [name, body] of blobs) await source.getBlockBlobClient(name).uploadData(Buffer.from(body));
      },
    });
    ({ blob, stack, events } = fx);
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('IMAGE_EXTENSIONS takes every image blob (not the .txt); each gets the PNG vector; hostile ones fail with codes', async () => {
    const res = await postIngestion(stack.url, {
      source: { container: 'uploads', extensions: [...IMAGE_EXTENSIONS] },
      output: { container: 'vectors', prefix: 'formats' },
    });
    expect(res.status).toBe(202);
    const final = await events.final(stack.url, res.json.id);
    expect(final.counts).toMatchObject({ discovered: 10, done: 8, failed: 2 });

    const failures = await getJson(`${stack.url}/v1/ingestions/${res.json.id}/failures`);
    const codes = Object.fromEntries(
      (failures.items as { blob: string; error: { code: string } }[]).map((f) => [f.blob, f.error.code]),
    );
    expect(codes).toEqual({
      'bad/absurd.heic': 'IMAGE_TOO_MANY_PIXELS',
      'bad/cut.bmp': 'IMAGE_DECODE_FAILED',
    });

    const out = await readOutput(blob.getContainerClient('vectors'), 'formats');
    const rows = new Map([...out.shards.values()].flat().map((r) => [r.name, r.vector]));
    expect([...rows.keys()].sort()).toEqual(
      [...blobs.keys()].filter((n) => !n.startsWith('bad/') && !n.endsWith('.txt')).sort(),
    );
    const ref = rows.get('ref/photo.png')!;
    for (const [name, vector] of rows) {
      const lossy = /\.(heic|avif)$/i.test(name);
      expect(cosine(vector, ref), name).toBeGreaterThanOrEqual(lossy ? 0.99 : 0.99999);
    }
  });
});
