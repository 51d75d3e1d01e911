/**
 * Every CLI command that talks to the API goes through one client (apps/cli/src/commands/api-client.ts): run here
 * against a real API with API keys on (and a worker with ingestion over Azurite), with the key from
 * $EMBEDPOOL_API_KEY or --api-key, the URL from $EMBEDPOOL_URL or --url; refusals are one line with the
 * service's code.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hashKey, newKey } from '@embedpool/api';
import { parityImages } from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blobService, makeBlobs, upload } from '../e2e/ingest-support';
import { type Azurite, startAzurite } from '../support/azurite';
import { startStack, testConfig } from '../support/stack';
import { jsonLines, runCli } from './run-cli';

const KEY = newKey();
const SOURCE = 'cli-src';
/** One line, the service's refusal with its code, and nothing else. */
const ONE_LINE_401 = /^embedpool: error: [A-Z]+ \/v1\/\S+: HTTP 401: .*\(UNAUTHORIZED\)\n$/;

describe('the CLI against an API with auth on', { timeout: 180_000 }, () => {
  let azurite: Azurite;
  let stack: Awaited<ReturnType<typeof startStack>>;
  let url: string;
  /** $EMBEDPOOL_URL and $EMBEDPOOL_API_KEY, as a deployment's user sets them. */
  let env: Record<string, string>;
  let partialId: string;
  let silent: Server;

  beforeAll(async () => {
    azurite = await startAzurite();
    const blob = blobService(azurite.connectionString);
    const good = await makeBlobs(6);
    await upload(
      blob.getContainerClient(SOURCE),
      good.map((b) => ({ ...b, name: `good/${b.name}` })),
    );
    await upload(blob.getContainerClient(SOURCE), [
      { name: 'bad/corrupt.jpg', body: Buffer.from('not an image'), good: false },
    ]);
    stack = await startStack(
      testConfig({ API_KEYS: `cli:${hashKey(KEY)}`, BLOB_CONNECTION_STRING: azurite.connectionString }),
    );
    url = stack.api.url;
    env = { EMBEDPOOL_URL: url, EMBEDPOOL_API_KEY: KEY };
    // Accepts connections and never answers: for --timeout.
    silent = createServer(() => {});
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
  });
  afterAll(async () => {
    silent?.closeAllConnections();
    await new Promise((r) => silent?.close(r));
    await stack?.stop();
    await azurite?.dispose();
  });

  it('every API command without a key: exit 1 and one line naming UNAUTHORIZED', async () => {
    const noKey = { EMBEDPOOL_URL: url, EMBEDPOOL_API_KEY: '' };
    const commands = [
      ['ingest', '--container', SOURCE, '--output', 'vectors/nokey'],
      ['ingest', '--retry-failed', 'ing-000000000-00000000'],
      ['ingestions', 'list'],
      ['ingestions', 'show', 'ing-000000000-00000000'],
      ['ingestions', 'failures', 'ing-000000000-00000000'],
      ['ingestions', 'cancel', 'ing-000000000-00000000'],
      ['ingestions', 'retry-failed', 'ing-000000000-00000000'],
      ['submit', parityImages()[0]!.path],
      ['status', '00000000-0000-4000-8000-000000000000'],
    ];
    const results = await Promise.all(commands.map((args) => runCli(args, noKey)));
    results.forEach((r, i) => {
      expect(r.code, `${commands[i]!.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr, commands[i]!.join(' ')).toMatch(ONE_LINE_401);
    });
    expect(results[0]!.stderr).toContain('set EMBEDPOOL_API_KEY or --api-key');
    // A wrong key is refused the same way.
    const wrong = await runCli(['ingestions', 'list', '--api-key', newKey()], { EMBEDPOOL_URL: url });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(ONE_LINE_401);
  });

  it('embedpool ingest --watch with $EMBEDPOOL_API_KEY runs to completion', async () => {
    const r = await runCli(
      [
        'ingest',
        '--container',
        SOURCE,
        '--prefix',
        'good/',
        '--output',
        'vectors/auth',
        '--watch',
        '--interval',
        '200',
      ],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^ing-\S+ completed: 6 embedded, 0 failed, 0 unchanged, 0 cancelled in \d+s; manifest vectors\/auth\/_manifest.json\n$/,
    );
  });

  it('--api-key and --url flags: a run with a failure exits 2; show, failures and list read it', async () => {
    const r = await runCli(
      [
        'ingest',
        '--container',
        SOURCE,
        '--output',
        'vectors/flags',
        '--watch',
        '--url',
        url,
        '--api-key',
        KEY,
      ],
      { EMBEDPOOL_API_KEY: '' },
    );
    expect(r.code, r.stderr).toBe(2);
    partialId = /^(ing-\S+) partially_failed: 6 embedded, 1 failed/.exec(r.stdout)![1]!;

    const show = await runCli(['ingestions', 'show', partialId], env);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toMatch(/^state +partially_failed$/m);
    expect(show.stdout).toMatch(
      /^counts +listed 7, queued 0, embedded 6, skipped 0, failed 1, cancelled 0$/m,
    );
    expect(show.stdout).toMatch(/^failed +bad\/corrupt\.jpg: IMAGE_\w+: .* \(permanent\)$/m);
    expect(show.stdout).toContain(`embedpool ingest --retry-failed ${partialId} --watch`);

    const failures = await runCli(['ingestions', 'failures', partialId], env);
    expect(failures.code, failures.stderr).toBe(0);
    expect(jsonLines<{ blob: string }>(failures.stdout).map((f) => f.blob)).toEqual(['bad/corrupt.jpg']);

    const list = await runCli(['ingestions', 'list', '--json'], env);
    expect(list.code, list.stderr).toBe(0);
    expect(jsonLines<{ id: string }>(list.stdout).map((v) => v.id)).toContain(partialId);
  });

  it('ingest --retry-failed and ingestions retry-failed re-run only the failed blob; cancel of a finished one is one line', async () => {
    const retry = await runCli(['ingest', '--retry-failed', partialId, '--watch', '--interval', '200'], env);
    // The blob is still corrupt: the round ends with the same one failure, nothing else re-embedded.
    expect(retry.code, retry.stderr).toBe(2);
    expect(retry.stderr).toContain(`${partialId}: 1 failed blobs queued again (round 1)`);
    expect(retry.stdout).toMatch(/partially_failed: 6 embedded, 1 failed/);

    const again = await runCli(['ingestions', 'retry-failed', partialId, '--watch'], env);
    expect(again.code, again.stderr).toBe(2);
    expect(again.stderr).toContain('(round 2)');

    const cancel = await runCli(['ingestions', 'cancel', partialId], env);
    expect(cancel.code).toBe(1);
    expect(cancel.stderr).toMatch(
      /^embedpool: error: DELETE \/v1\/ingestions\/ing-\S+: HTTP 400: ingestion ing-\S+ is already partially_failed; there is nothing to cancel \(BAD_REQUEST\)\n$/,
    );
  });

  it('submit --wait and status with the key from the environment', async () => {
    const s = await runCli(['submit', parityImages()[0]!.path, '--wait'], env);
    expect(s.code, s.stderr).toBe(0);
    const id = /job ([0-9a-f-]{36}) /.exec(s.stderr)![1]!;
    const st = await runCli(['status', id, '--json'], env);
    expect(st.code, st.stderr).toBe(0);
    expect(JSON.parse(st.stdout)).toMatchObject({ id, state: 'completed' });
  });

  it('--timeout: an API that never answers is one UNAVAILABLE line, not a hang', async () => {
    const port = (silent.address() as AddressInfo).port;
    const r = await runCli(
      ['ingestions', 'list', '--url', `http://127.0.0.1:${port}`, '--timeout', '1'],
      env,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^embedpool: error: cannot reach the API at .*: no answer in time \(UNAVAILABLE\)\n$/,
    );
  });
});
