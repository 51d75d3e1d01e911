/**
 * `npm run fleet:smoke`: docker-compose.yml run as local processes (test/infra/fleet.ts) with a user's `.env`
 * (API key from `embedpool key new --format env`, callback secret, metrics and dashboard tokens, FETCH_ALLOW
 * for a receiver on this host), then the product's jobs through them: a `/score`, an async job written to
 * Blob (Azurite) with a signed callback to a loopback receiver, and a small bulk ingestion of an Azurite
 * container. It proves the shipped wiring (every variable a feature needs reaches the process that needs it)
 * without a container engine.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { cosine, parityImages, REPO_ROOT } from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli/run-cli';
import { AZURITE_ACCOUNT, AZURITE_KEY } from '../support/azurite';
import { type Fleet, PARITY_MODEL_ID, readComposeServices, startFleet } from './fleet';

const images = parityImages().filter((i) => i.reference);
const b64 = (path: string) => readFileSync(path).toString('base64');

interface Hook {
  headers: IncomingMessage['headers'];
  body: string;
}

/** A webhook receiver on loopback that resolves `next()` with each request it answers 204. */
function receiver() {
  const got: Hook[] = [];
  const waiters: ((h: Hook) => void)[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      const hook = { headers: req.headers, body };
      got.push(hook);
      res.writeHead(204).end();
      waiters.shift()?.(hook);
    });
  });
  return {
    server,
    got,
    next: () =>
      new Promise<Hook>((resolve) => (got.length > 0 ? resolve(got.shift()!) : waiters.push(resolve))),
    url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
  };
}

/** Polls a status URL until `done(state)`; the product has no push channel for job/ingestion state. */
async function poll<T>(
  url: string,
  headers: Record<string, string>,
  done: (v: T) => boolean,
  timeoutMs = 120_000,
) {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    const res = await fetch(url, { headers });
    last = (await res.json()) as T;
    if (res.ok && done(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url}: not done within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

describe('docker-compose.yml as local processes: score, job to Blob with a signed callback, ingestion', () => {
  let fleet: Fleet;
  let key = '';
  let auth: Record<string, string> = {};
  let blob: BlobServiceClient;
  const hook = receiver();
  const userEnv: Record<string, string> = {
    AUTH: 'keys',
    CALLBACK_SECRET: randomBytes(24).toString('hex'),
    METRICS_TOKEN: randomBytes(24).toString('hex'),
    DASHBOARD_TOKEN: randomBytes(24).toString('hex'),
    FETCH_ALLOW: '127.0.0.0/8',
    LOG_LEVEL: 'warn',
  };

  beforeAll(async () => {
    // The user's .env, made with the documented command.
    const made = await runCli(['key', 'new', '--name', 'smoke', '--format', 'env']);
    expect(made.code, made.stderr).toBe(0);
    for (const line of made.stdout.trim().split('\n')) {
      const [k, v] = [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)];
      if (k === 'EMBEDPOOL_API_KEY') key = v;
      else userEnv[k] = v;
    }
    auth = { authorization: `Bearer ${key}` };
    await new Promise<void>((r) => hook.server.listen(0, '127.0.0.1', r));
    fleet = await startFleet({ userEnv });
    // The test reads and writes the emulator on its own, so a wiring fault shows in the tests below.
    const endpoint = `http://127.0.0.1:${fleet.network.get('azurite:10000')}/${AZURITE_ACCOUNT}`;
    blob = BlobServiceClient.fromConnectionString(
      `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${endpoint};`,
    );
  }, 300_000);

  afterAll(async () => {
    await fleet?.stop();
    await new Promise((r) => hook.server.close(r));
  }, 60_000);

  it('each process got exactly the variables its service declares (MODEL_PATH, MODEL_ID stand in for the model volume)', () => {
    const declared = readComposeServices(
      readFileSync(join(REPO_ROOT, 'docker-compose.yml'), 'utf8'),
      userEnv,
    );
    expect(Object.keys(fleet.env.api!).sort()).toEqual(Object.keys(declared.api!.environment).sort());
    expect(Object.keys(fleet.env.worker!).sort()).toEqual(
      [...Object.keys(declared.worker!.environment), 'MODEL_ID', 'MODEL_PATH'].sort(),
    );
  });

  it('the processes got the wiring the file declares: storage, callbacks, keys, tokens', () => {
    for (const name of ['api', 'worker']) {
      const env = fleet.env[name]!;
      expect(env.BLOB_CONNECTION_STRING, name).toContain(
        `BlobEndpoint=http://127.0.0.1:${fleet.network.get('azurite:10000')}/devstoreaccount1;`,
      );
      expect(env.REDIS_URL, name).toBe(`redis://127.0.0.1:${fleet.network.get('redis:6379')}`);
      expect(env.CALLBACK_SECRET, name).toBe(userEnv.CALLBACK_SECRET);
      expect(env.NODE_ENV).toBe('production');
    }
    expect(fleet.env.api).toMatchObject({
      AUTH: 'keys',
      API_KEYS: userEnv.API_KEYS,
      METRICS_TOKEN: userEnv.METRICS_TOKEN,
      DASHBOARD_TOKEN: userEnv.DASHBOARD_TOKEN,
    });
  });

  it('/score answers with the reference vectors, behind the API key', async () => {
    const body = {
      input_data: { columns: ['image'], index: [0, 1], data: images.slice(0, 2).map((i) => [b64(i.path)]) },
    };
    const denied = await fetch(`${fleet.apiUrl}/score`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(denied.status).toBe(401);
    const res = await fetch(`${fleet.apiUrl}/score`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    const rows = (await res.json()) as { image_features: number[] }[];
    expect(rows).toHaveLength(2);
    rows.forEach((row, i) => {
      expect(cosine(row.image_features, images[i]!.reference!)).toBeGreaterThan(0.999);
    });
  }, 120_000);

  it('an async job lands in Blob (Azurite) and its signed pointer reaches a loopback receiver', async () => {
    const res = await fetch(`${fleet.apiUrl}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({
        images: images.slice(0, 3).map((i) => ({ id: i.name, base64: b64(i.path) })),
        output: { type: 'blob', container: 'smoke-jobs', path: 'runs/{jobId}', callbackUrl: hook.url() },
      }),
    });
    const submitted = (await res.json()) as { id: string };
    expect(res.status, JSON.stringify(submitted)).toBe(202);

    const delivery = await hook.next();
    const header = String(delivery.headers['embedpool-signature']);
    const t = /t=(\d+)/.exec(header)?.[1];
    const v1 = /v1=([0-9a-f]+)/.exec(header)?.[1];
    expect(createHmac('sha256', userEnv.CALLBACK_SECRET!).update(`${t}.${delivery.body}`).digest('hex')).toBe(
      v1,
    );
    const pointer = JSON.parse(delivery.body) as {
      model: string;
      jobId: string;
      state: string;
      location: { container: string; blobs: string[] };
    };
    expect(pointer).toMatchObject({
      model: PARITY_MODEL_ID,
      jobId: submitted.id,
      state: 'completed',
      location: { container: 'smoke-jobs' },
    });

    const jsonl = pointer.location.blobs.find((b) => b.endsWith('.jsonl'))!;
    expect(jsonl).toBe(`runs/${submitted.id}.jsonl`);
    const text = (
      await blob.getContainerClient('smoke-jobs').getBlobClient(jsonl).downloadToBuffer()
    ).toString();
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; image_features: number[] });
    expect(lines.map((l) => l.id)).toEqual(images.slice(0, 3).map((i) => i.name));
    lines.forEach((l, i) => {
      expect(cosine(l.image_features, images[i]!.reference!)).toBeGreaterThan(0.999);
    });
    const job = await poll<{ state: string }>(
      `${fleet.apiUrl}/v1/jobs/${submitted.id}`,
      auth,
      (j) => j.state === 'completed',
    );
    expect(job.state).toBe('completed');
  }, 180_000);

  it('a bulk ingestion of an Azurite container writes its Parquet shards and manifest', async () => {
    const source = blob.getContainerClient('smoke-photos');
    await source.createIfNotExists();
    const photos = images.slice(0, 4);
    for (const p of photos)
      await source.getBlockBlobClient(`photos/${p.name}`).uploadData(readFileSync(p.path));

    const res = await fetch(`${fleet.apiUrl}/v1/ingestions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({
        source: { container: 'smoke-photos' },
        output: { container: 'smoke-vectors', prefix: 'v1' },
      }),
    });
    const created = (await res.json()) as { id: string; statusUrl: string };
    expect(res.status, JSON.stringify(created)).toBe(202);
    const final = await poll<{ state: string; counts: { done: number; failed: number } }>(
      `${fleet.apiUrl}${created.statusUrl}`,
      auth,
      (v) => ['completed', 'partially_failed', 'failed', 'cancelled'].includes(v.state),
    );
    expect(final.state).toBe('completed');
    expect(final.counts).toMatchObject({ done: photos.length, failed: 0 });
    const manifest = JSON.parse(
      (
        await blob.getContainerClient('smoke-vectors').getBlobClient('v1/_manifest.json').downloadToBuffer()
      ).toString(),
    ) as { shardFormat: string; counts: { rows: number }; shards: { name: string }[] };
    expect(manifest.shardFormat).toBe('parquet');
    expect(manifest.counts.rows).toBe(photos.length);
    for (const s of manifest.shards) {
      const props = await blob
        .getContainerClient('smoke-vectors')
        .getBlobClient(`v1/${s.name}`)
        .getProperties();
      expect(props.contentLength).toBeGreaterThan(0);
    }
  }, 180_000);

  it('/metrics takes METRICS_TOKEN and the queue dashboard DASHBOARD_TOKEN', async () => {
    expect((await fetch(`${fleet.apiUrl}/metrics`)).status).toBe(401);
    const metrics = await fetch(`${fleet.apiUrl}/metrics`, {
      headers: { authorization: `Bearer ${userEnv.METRICS_TOKEN}` },
    });
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/^embedpool_/m);
    expect((await fetch(`${fleet.apiUrl}/admin/queues`)).status).toBe(401);
    const dash = await fetch(`${fleet.apiUrl}/admin/queues`, {
      headers: { authorization: `Bearer ${userEnv.DASHBOARD_TOKEN}` },
    });
    expect(dash.status).toBe(200);
  });
});
