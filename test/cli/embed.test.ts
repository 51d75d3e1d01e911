import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { cosine, PARITY_CONFIG, PARITY_MODEL, PARITY_WEIGHTS, parityImages } from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLines, runCli } from './run-cli';

type Line = { file: string; image_features?: number[]; error?: { code: string; message: string } };

const images = parityImages();
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'embedpool-cli-embed-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), 8 + data.length);
  return out;
}

/** A valid PNG header claiming width x height (8-bit grey) with a tiny IDAT: a decompression bomb. */
function bombPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(64 * 1024), { level: 9 })),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

// Each test starts the CLI (a second or more of tsx and imports); a busy machine needs headroom.
describe('embedpool embed', { timeout: 120_000 }, () => {
  it('embeds every fixture image with a model built from the fixture weights, matching the reference', async () => {
    const model = join(dir, 'built.onnx');
    const out = join(dir, 'out.jsonl');
    const build = await runCli([
      'model',
      'build',
      '--config',
      PARITY_CONFIG,
      '--weights',
      PARITY_WEIGHTS,
      '--out',
      model,
    ]);
    expect(build.code, build.stderr).toBe(0);
    expect(build.stdout).toMatch(/params=\d+ bytes=\d+ .*path=.*built\.onnx\n$/);

    const files = images.map((i) => i.path);
    const r = await runCli(['embed', ...files, '--model', model, '--out', out, '--batch-size', '4']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    const lines = jsonLines<Line>(readFileSync(out, 'utf8'));
    expect(lines.map((l) => l.file)).toEqual(files);
    for (const [i, img] of images.entries()) {
      const v = lines[i]!.image_features;
      expect(v, `${img.name}: ${JSON.stringify(lines[i]!.error)}`).toHaveLength(192);
      if (img.reference) expect(cosine(v!, img.reference), img.name).toBeGreaterThanOrEqual(0.999);
    }
    // The temp file was renamed into place, not left beside it.
    expect(readdirSync(dir).sort()).toEqual(['built.onnx', 'built.onnx.identity.json', 'out.jsonl']);
  });

  it('reports bad files per line, in input order, embeds the rest and exits 2', async () => {
    const corrupt = join(dir, 'corrupt.jpg');
    const text = join(dir, 'notes.txt');
    const bomb = join(dir, 'bomb_30000x30000.png');
    writeFileSync(corrupt, randomBytes(4096));
    writeFileSync(text, 'this is not an image\n'.repeat(50));
    writeFileSync(bomb, bombPng(30_000, 30_000));
    expect(statSync(bomb).size).toBeLessThan(16 * 1024);
    const missing = join(dir, 'missing.png');
    const good = images.filter((i) => i.reference).slice(0, 3);
    const files = [good[0]!.path, corrupt, good[1]!.path, text, bomb, missing, good[2]!.path];

    const r = await runCli(['embed', ...files, '--model', PARITY_MODEL]);
    expect(r.code, r.stderr).toBe(2);
    const lines = jsonLines<Line>(r.stdout);
    expect(lines.map((l) => l.file)).toEqual(files);
    const byName = new Map(lines.map((l) => [basename(l.file), l]));
    expect(byName.get('corrupt.jpg')!.error!.code).toMatch(/^IMAGE_(UNSUPPORTED_FORMAT|DECODE_FAILED)$/);
    expect(byName.get('notes.txt')!.error!.code).toBe('IMAGE_UNSUPPORTED_FORMAT');
    expect(byName.get('bomb_30000x30000.png')!.error!.code).toBe('IMAGE_TOO_MANY_PIXELS');
    expect(byName.get('missing.png')!.error!.code).toBe('NOT_FOUND');
    for (const l of lines.filter((x) => x.error)) {
      expect(l.image_features).toBeUndefined();
      expect(l.error!.message.length).toBeGreaterThan(0);
    }
    for (const img of good) {
      const v = byName.get(img.name)!.image_features!;
      expect(cosine(v, img.reference!)).toBeGreaterThanOrEqual(0.999);
    }
  });

  it('survives a command line of hundreds of paths (onnxruntime telemetry overflowed the stack on it)', async () => {
    const missing = Array.from({ length: 300 }, (_, i) =>
      join(dir, 'no-such-directory-with-a-long-name', `${i}.jpg`),
    );
    const files = [images[0]!.path, ...missing];
    expect(files.join(' ').length).toBeGreaterThan(20_000);
    const r = await runCli(['embed', ...files, '--model', PARITY_MODEL]);
    expect(r.code, r.stderr).toBe(2);
    const lines = jsonLines<Line>(r.stdout);
    expect(lines.map((l) => l.file)).toEqual(files);
    expect(lines[0]!.image_features).toHaveLength(192);
    expect(new Set(lines.slice(1).map((l) => l.error?.code))).toEqual(new Set(['NOT_FOUND']));
  });

  it('fails with exit 1 and a one-line message, not a stack trace, when the model is missing', async () => {
    const out = join(dir, 'never.jsonl');
    const r = await runCli(['embed', images[0]!.path, '--model', join(dir, 'nope.onnx'), '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('nope.onnx');
    expect(r.stderr).toContain('MODEL_NOT_FOUND');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(readdirSync(dir).some((f) => f.includes('never'))).toBe(false);
  });
});
