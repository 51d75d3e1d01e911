import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cosine, parityImages } from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, testConfig } from '../support/stack';
import { jsonLines, runCli } from './run-cli';

type Line = { id: string; image_features?: number[]; error?: { code: string; message: string } };

const images = parityImages().filter((i) => i.reference);
const JOB_ID = /job ([0-9a-f-]{36}) /;

// Each test starts the CLI (tsx and imports: a second or more) against a stack in this process.
describe('embedpool submit / status', { timeout: 120_000 }, () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  let dir: string;
  let files: Server;
  let filesUrl: string;

  beforeAll(async () => {
    // Loopback image URLs are refused unless allowed: the URL input below is served from this process.
    stack = await startStack(testConfig({ MAX_BATCH_SIZE: '8', FETCH_ALLOW: '127.0.0.0/8' }));
    dir = await mkdtemp(join(tmpdir(), 'embedpool-cli-submit-'));
    files = createServer((req, res) => {
      const img = images.find((i) => `/${i.name}` === req.url);
      if (!img) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'image/png' }).end(readFileSync(img.path));
    });
    await new Promise<void>((resolve) => files.listen(0, '127.0.0.1', resolve));
    filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => files?.close(resolve));
    await stack?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('embeds local files and a URL with --wait --out, matching the reference; status shows it completed', async () => {
    const out = join(dir, 'results.jsonl');
    const url = `${filesUrl}/${images[0]!.name}`;
    const args = [...images.map((i) => i.path), url];
    const r = await runCli(['submit', ...args, '--url', stack.api.url, '--wait', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/ completed in [\d.]+ s: \d+ succeeded, 0 failed of \d+ \(model parity/);
    const id = JOB_ID.exec(r.stderr)?.[1];
    expect(id, r.stderr).toBeDefined();
    expect(r.stderr).toContain(`${stack.api.url}/v1/jobs/${id}`);

    const lines = jsonLines<Line>(readFileSync(out, 'utf8'));
    expect(lines.map((l) => l.id)).toEqual(args);
    const reference = [...images.map((i) => i.reference!), images[0]!.reference!];
    lines.forEach((line, i) => {
      expect(line.error, line.id).toBeUndefined();
      expect(Object.keys(line)).toEqual(['id', 'image_features']);
      expect(cosine(line.image_features!, reference[i]!), line.id).toBeGreaterThanOrEqual(0.999);
    });

    const json = await runCli(['status', id!, '--url', stack.api.url, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const job = JSON.parse(json.stdout);
    expect(job).toMatchObject({
      id,
      state: 'completed',
      counts: { total: args.length, succeeded: args.length, failed: 0 },
      output: { type: 'inline' },
      location: { type: 'inline', resultPath: `/v1/jobs/${id}/result` },
    });

    const text = await runCli(['status', id!, '--url', stack.api.url]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^state {5}completed$/m);
    expect(text.stdout).toMatch(
      new RegExp(`^images {4}${args.length} total, ${args.length} succeeded, 0 failed$`, 'm'),
    );
    expect(text.stdout).toMatch(/^finished {2}\d{4}-\d\d-\d\dT.* in [\d.]+ s$/m);
    expect(text.stdout).toContain(`result    ${stack.api.url}/v1/jobs/${id}/result`);
  });

  it('writes an error line for a bad image, the others embedded, to stdout, and exits 2', async () => {
    const bad = join(dir, 'not-an-image.png');
    writeFileSync(bad, 'this is text');
    const r = await runCli([
      'submit',
      images[1]!.path,
      bad,
      '--url',
      stack.api.url,
      '--wait',
      '--normalize',
      '--priority',
      '7',
    ]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/ partially_failed in [\d.]+ s: 1 succeeded, 1 failed of 2/);
    expect(r.stderr).toContain(`failed    ${bad}: IMAGE_UNSUPPORTED_FORMAT`);
    const lines = jsonLines<Line>(r.stdout);
    expect(lines.map((l) => l.id)).toEqual([images[1]!.path, bad]);
    expect(Math.hypot(...lines[0]!.image_features!)).toBeCloseTo(1, 5);
    expect(cosine(lines[0]!.image_features!, images[1]!.reference!)).toBeGreaterThanOrEqual(0.999);
    expect(lines[1]!.error?.code).toBe('IMAGE_UNSUPPORTED_FORMAT');
  });

  it('without --wait prints the job id; the same Idempotency-Key gives the same job; EMBEDPOOL_URL is used', async () => {
    const key = `cli-${Date.now()}`;
    const env = { EMBEDPOOL_URL: stack.api.url };
    const first = await runCli(['submit', images[2]!.path, '--idempotency-key', key], env);
    expect(first.code, first.stderr).toBe(0);
    const id = first.stdout.trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const again = await runCli(['submit', images[2]!.path, '--idempotency-key', key], env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.trim()).toBe(id);
    expect(again.stderr).toMatch(/already submitted with this Idempotency-Key/);
  });

  it('exits 1 on usage errors, unreadable files and refusals of the API, naming the cause', async () => {
    const missing = await runCli(['submit', join(dir, 'nope.jpg'), '--url', stack.api.url]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read .*nope\.jpg \(ENOENT\); nothing was submitted/);

    const badOutput = await runCli(['submit', images[0]!.path, '--output', 'ftp:x', '--url', stack.api.url]);
    expect(badOutput.code).toBe(1);
    expect(badOutput.stderr).toMatch(/--output <spec>.*is invalid/);

    // This deployment has no storage account: the API refuses blob output with a 400.
    const blob = await runCli([
      'submit',
      images[0]!.path,
      '--output',
      'blob:emb/{jobId}',
      '--url',
      stack.api.url,
    ]);
    expect(blob.code).toBe(1);
    expect(blob.stderr).toMatch(/HTTP 400: blob output is not available.*\(BAD_REQUEST\)/);

    // A bad URL input is named by its argument.
    const refused = await runCli(['submit', 'http://[::1', images[0]!.path, '--url', stack.api.url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/ {2}http:\/\/\[::1: URL_INVALID/);

    const unknown = await runCli(['status', 'no-such-job', '--url', stack.api.url]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/HTTP 404: no job no-such-job \(NOT_FOUND\)/);

    // EMBEDPOOL_API_KEY travels as a bearer token (seen here by a stand-in API).
    let seen: string | undefined;
    const fake = createServer((req, res) => {
      seen = req.headers.authorization;
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'UNAUTHORIZED', message: 'bad key' } }));
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    try {
      const port = (fake.address() as AddressInfo).port;
      const r = await runCli(['status', 'x', '--url', `http://127.0.0.1:${port}/`], {
        EMBEDPOOL_API_KEY: 'k-123',
      });
      expect(r.code).toBe(1);
      expect(seen).toBe('Bearer k-123');
      expect(r.stderr).toMatch(/GET \/v1\/jobs\/x: HTTP 401: bad key/);
    } finally {
      await new Promise((resolve) => fake.close(resolve));
    }
  });
});
