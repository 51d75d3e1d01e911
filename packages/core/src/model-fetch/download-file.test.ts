import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type FixtureServer,
  type FixtureServerOptions,
  sha256Hex,
  startFixtureServer,
} from '@embedpool/testkit/fixture-server';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EmbedpoolError } from '../errors';
import { downloadFile } from './download-file';

const PATH = '/org/model/resolve/0123456789abcdef0123456789abcdef01234567/onnx/model.onnx';
const BODY = randomBytes(3 * 1024 * 1024 + 123);
const SHA = sha256Hex(BODY);
const CUT = 1024 * 1024;

let dir: string;
let server: FixtureServer | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'model-fetch-'));
});
afterEach(async () => {
  await server?.close();
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function serve(options: Partial<FixtureServerOptions> = {}): Promise<FixtureServer> {
  server = await startFixtureServer({ files: { [PATH]: { body: BODY } }, ...options });
  return server;
}

function fetchOpts(s: FixtureServer, extra: Partial<Parameters<typeof downloadFile>[0]> = {}) {
  return {
    url: `${s.url}${PATH}`,
    dest: join(dir, 'model.onnx'),
    retryDelayMs: 1,
    progress: 'none' as const,
    ...extra,
  };
}

async function rejection(p: Promise<unknown>): Promise<EmbedpoolError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EmbedpoolError);
  return err as EmbedpoolError;
}

describe('downloadFile', () => {
  it('downloads through a redirect, verifies the sha256, and does not download a verified file again', async () => {
    const s = await serve();
    const events: number[] = [];
    const first = await downloadFile(fetchOpts(s, { onProgress: (e) => events.push(e.received) }));
    expect(first).toMatchObject({
      sha256: SHA,
      bytes: BODY.length,
      resumedFrom: 0,
      downloaded: true,
      verified: true,
    });
    expect(readFileSync(first.path).equals(BODY)).toBe(true);
    expect(existsSync(`${first.path}.partial`)).toBe(false);
    expect(events.at(-1)).toBe(BODY.length);
    expect(s.gets('/cdn/')).toHaveLength(1);
    const getsBefore = s.gets().length;

    const second = await downloadFile(fetchOpts(s));
    expect(second).toMatchObject({ downloaded: false, verified: true, sha256: SHA });
    // Only a HEAD to learn the expected hash; no byte is fetched again.
    expect(s.gets()).toHaveLength(getsBefore);
  });

  it('resumes with a Range request after the connection is cut and ends byte-identical', async () => {
    const s = await serve({ cutAt: ({ getIndex }) => (getIndex === 0 ? CUT : undefined) });
    const result = await downloadFile(fetchOpts(s));
    expect(readFileSync(result.path).equals(BODY)).toBe(true);
    expect(result.sha256).toBe(SHA);
    const gets = s.gets('/cdn/');
    expect(gets).toHaveLength(2);
    expect(gets[0]!.headers.range).toBeUndefined();
    const resumeAt = Number(/^bytes=(\d+)-$/.exec(String(gets[1]!.headers.range))?.[1]);
    // Bytes still buffered in the client when the socket died are dropped, so the resume point can sit a
    // little before the cut, never after it.
    expect(resumeAt).toBeGreaterThan(0);
    expect(resumeAt).toBeLessThanOrEqual(CUT);
    expect(gets[1]!.sent).toBe(BODY.length - resumeAt);
  });

  it('resumes a partial left by an earlier run', async () => {
    const s = await serve();
    const dest = join(dir, 'model.onnx');
    writeFileSync(`${dest}.partial`, BODY.subarray(0, 5000));
    const result = await downloadFile(fetchOpts(s));
    expect(result.resumedFrom).toBe(5000);
    expect(s.gets('/cdn/')[0]!.headers.range).toBe('bytes=5000-');
    expect(readFileSync(dest).equals(BODY)).toBe(true);
  });

  it('starts over when the server answers a Range request with 200', async () => {
    const s = await serve({ ignoreRange: true });
    const dest = join(dir, 'model.onnx');
    writeFileSync(`${dest}.partial`, Buffer.from('garbage that must not stay at the front'));
    const result = await downloadFile(fetchOpts(s));
    expect(readFileSync(dest).equals(BODY)).toBe(true);
    expect(result.sha256).toBe(SHA);
  });

  it('verifies a complete partial when the server answers 416', async () => {
    const s = await serve();
    const dest = join(dir, 'model.onnx');
    writeFileSync(`${dest}.partial`, BODY);
    // A pinned hash skips the HEAD, so the size is unknown and the GET asks for bytes past the end.
    const result = await downloadFile(fetchOpts(s, { sha256: SHA }));
    expect(s.requests.map((r) => r.method)).toEqual(['GET', 'GET']);
    expect(s.gets('/cdn/')[0]!.headers.range).toBe(`bytes=${BODY.length}-`);
    expect(result).toMatchObject({ sha256: SHA, resumedFrom: BODY.length, verified: true });
    expect(readFileSync(dest).equals(BODY)).toBe(true);
  });

  it('rejects bytes that do not match the advertised X-Linked-Etag and leaves nothing behind', async () => {
    const wrong = 'a'.repeat(64);
    server = await startFixtureServer({ files: { [PATH]: { body: BODY, linkedEtag: wrong } } });
    const err = await rejection(downloadFile(fetchOpts(server)));
    expect(err.code).toBe('DOWNLOAD_HASH_MISMATCH');
    expect(err.message).toContain('model.onnx');
    expect(err.message).toContain(wrong);
    expect(err.message).toContain(SHA);
    expect(existsSync(join(dir, 'model.onnx'))).toBe(false);
    expect(existsSync(join(dir, 'model.onnx.partial'))).toBe(false);
  });

  it('rejects bytes that do not match a pinned sha256, whatever the server advertises', async () => {
    const s = await serve();
    const pinned = 'b'.repeat(64);
    const err = await rejection(downloadFile(fetchOpts(s, { sha256: pinned })));
    expect(err.code).toBe('DOWNLOAD_HASH_MISMATCH');
    expect(err.details).toMatchObject({ expected: pinned, actual: SHA });
    expect(existsSync(join(dir, 'model.onnx'))).toBe(false);
    expect(existsSync(join(dir, 'model.onnx.partial'))).toBe(false);
  });

  it('gives up on a download that never gets past a cut, keeping the partial for the next run', async () => {
    const s = await serve({ cutAt: () => CUT });
    const err = await rejection(downloadFile(fetchOpts(s, { retries: 2 })));
    expect(err.code).toBe('DOWNLOAD_FAILED');
    expect(existsSync(join(dir, 'model.onnx'))).toBe(false);
    // One attempt that made progress plus `retries` + 1 that made none.
    expect(s.gets('/cdn/').length).toBeGreaterThanOrEqual(3);
    const partial = readFileSync(join(dir, 'model.onnx.partial'));
    expect(partial.length).toBeGreaterThan(0);
    expect(partial.length).toBeLessThanOrEqual(CUT);
    expect(partial.equals(BODY.subarray(0, partial.length))).toBe(true);
    // The message says what is really on disk.
    expect(err.message).toContain(`the ${partial.length} bytes received so far are kept in`);
  });

  it('says nothing was written when no byte ever arrived (no server: as offline)', async () => {
    const s = await serve();
    const url = `${s.url}${PATH}`;
    await s.close();
    server = undefined;
    const err = await rejection(
      downloadFile({ url, dest: join(dir, 'model.onnx'), retries: 1, retryDelayMs: 1, progress: 'none' }),
    );
    expect(err.code).toBe('DOWNLOAD_FAILED');
    expect(err.message).toMatch(/nothing was written to the cache$/);
    expect(err.message).not.toMatch(/resume/);
    expect(existsSync(join(dir, 'model.onnx.partial'))).toBe(false);
  });

  it('retries a 503', async () => {
    const s = await serve({
      statusFor: ({ method, index }) => (method === 'GET' && index === 2 ? 503 : undefined),
    });
    const result = await downloadFile(fetchOpts(s));
    expect(result.sha256).toBe(SHA);
    expect(s.requests.map((r) => r.method)).toEqual(['HEAD', 'HEAD', 'GET', 'GET', 'GET']);
  });

  it('maps 404 to MODEL_NOT_FOUND and 401 to DOWNLOAD_FAILED naming HF_TOKEN', async () => {
    const s = await serve({ statusFor: ({ path }) => (path.includes('private') ? 401 : undefined) });
    const missing = await rejection(
      downloadFile({ ...fetchOpts(s), url: `${s.url}/org/model/resolve/x/nope.bin` }),
    );
    expect(missing.code).toBe('MODEL_NOT_FOUND');
    const denied = await rejection(
      downloadFile({ ...fetchOpts(s), url: `${s.url}/org/private/resolve/x/a.bin` }),
    );
    expect(denied.code).toBe('DOWNLOAD_FAILED');
    expect(denied.message).toContain('HF_TOKEN');
    expect(s.requests).toHaveLength(2);
  });

  it('sends the token to the endpoint host but not to a redirect target on another host', async () => {
    const s = await serve({ redirect: 'other-host' });
    await downloadFile(fetchOpts(s, { headers: { Authorization: 'Bearer hf_secret' } }));
    const hub = s.requests.filter((r) => r.host.startsWith('127.0.0.1'));
    const cdn = s.requests.filter((r) => r.host.startsWith('localhost'));
    expect(hub.length).toBeGreaterThan(0);
    expect(cdn.length).toBeGreaterThan(0);
    for (const r of hub) expect(r.headers.authorization).toBe('Bearer hf_secret');
    for (const r of cdn) expect(r.headers.authorization).toBeUndefined();
  });

  it('keeps the token on a redirect to the same origin', async () => {
    const s = await serve({ redirect: 'same-host' });
    await downloadFile(fetchOpts(s, { headers: { authorization: 'Bearer hf_secret' } }));
    for (const r of s.requests) expect(r.headers.authorization).toBe('Bearer hf_secret');
  });

  it('checks the size of a small non-LFS file that has no sha256 to compare', async () => {
    const small = Buffer.from('{"model_type":"dinov2"}\n');
    server = await startFixtureServer({
      files: { '/o/m/resolve/c/config.json': { body: small, linkedEtag: null } },
    });
    const result = await downloadFile({
      ...fetchOpts(server),
      url: `${server.url}/o/m/resolve/c/config.json`,
    });
    expect(result).toMatchObject({ verified: false, bytes: small.length, sha256: sha256Hex(small) });
  });

  it('replaces a cached file whose content is wrong', async () => {
    const s = await serve();
    const dest = join(dir, 'model.onnx');
    writeFileSync(dest, randomBytes(BODY.length));
    const result = await downloadFile(fetchOpts(s));
    expect(result.downloaded).toBe(true);
    expect(readFileSync(dest).equals(BODY)).toBe(true);
  });

  it('cuts a stalled transfer after the idle timeout and resumes it', async () => {
    const s = await serve({ cutAt: ({ getIndex }) => (getIndex === 0 ? CUT : undefined), cutMode: 'stall' });
    const result = await downloadFile(fetchOpts(s, { timeouts: { idleMs: 150 } }));
    expect(readFileSync(result.path).equals(BODY)).toBe(true);
    expect(s.gets('/cdn/')[1]!.headers.range).toMatch(/^bytes=\d+-$/);
  });

  it('stops on abort with the signal reason, keeping the partial and no final file', async () => {
    let stalled!: () => void;
    const reachedCut = new Promise<void>((resolve) => {
      stalled = resolve;
    });
    const s = await serve({ cutAt: () => CUT, cutMode: 'stall', onCut: () => stalled() });
    const controller = new AbortController();
    const reason = new Error('stop now');
    writeFileSync(join(dir, 'model.onnx.partial'), BODY.subarray(0, 5000));
    const pending = downloadFile(fetchOpts(s, { signal: controller.signal })).catch((e: unknown) => e);
    await reachedCut;
    controller.abort(reason);
    expect(await pending).toBe(reason);
    expect(existsSync(join(dir, 'model.onnx'))).toBe(false);
    const partial = readFileSync(join(dir, 'model.onnx.partial'));
    expect(partial.length).toBeGreaterThanOrEqual(5000);
    expect(partial.equals(BODY.subarray(0, partial.length))).toBe(true);
    expect(s.gets('/cdn/')).toHaveLength(1);
  });
});
