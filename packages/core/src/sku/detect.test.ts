/**
 * Every metadata request here goes to a fake server on 127.0.0.1 (explicit endpoint) or to a recording
 * fetch that sends nothing; the one test that exercises the default Azure address also arms a tripwire
 * on node:http so that a bug could not put a packet on the wire.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  AZURE_DMI,
  detectLocalResources,
  detectSku,
  httpImdsFetch,
  type ImdsFetch,
  parseNvidiaSmi,
  queryImdsVmSize,
  type ReadTextFile,
} from './detect';
import { UnknownSkuError } from './errors';
import type { Resources } from './plan';

const LOCAL: Resources = { vcpus: 2, memoryGib: 8, gpus: [], smt: false };
const localResources = vi.fn(async () => LOCAL);

interface FakeImds {
  url: string;
  requests: { path: string; metadata: string | undefined }[];
  close(): Promise<void>;
}

/** A metadata server on loopback; `answer(n)` decides the n-th response (null: never answer). */
async function fakeImds(answer: (n: number) => { status: number; body: string } | null): Promise<FakeImds> {
  const requests: FakeImds['requests'] = [];
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    requests.push({ path: req.url ?? '', metadata: req.headers.metadata as string | undefined });
    const a = answer(requests.length);
    if (a === null) return; // hang until the client gives up
    res.writeHead(a.status, { 'content-type': 'text/plain' }).end(a.body);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const dmi =
  (vendor: string | null, tag: string | null): ReadTextFile =>
  async (path) => {
    const value =
      path === AZURE_DMI.sysVendorPath ? vendor : path === AZURE_DMI.chassisAssetTagPath ? tag : null;
    if (value === null) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return `${value}\n`;
  };
const AZURE = dmi(AZURE_DMI.sysVendor, AZURE_DMI.chassisAssetTag);
const NO_DMI = dmi(null, null);

function recordingFetch(response?: { status: number; body: string }) {
  const calls: { url: string; headers: Record<string, string> }[] = [];
  const fetchImpl: ImdsFetch = async (url, init) => {
    calls.push({ url, headers: init.headers });
    if (!response) throw new Error('recording fetch: no response configured');
    return response;
  };
  return { calls, fetchImpl };
}

let servers: FakeImds[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
  localResources.mockClear();
  vi.restoreAllMocks();
});
async function server(answer: Parameters<typeof fakeImds>[0]): Promise<FakeImds> {
  const s = await fakeImds(answer);
  servers.push(s);
  return s;
}

describe('detectSku: IMDS through an explicit endpoint (fake server on 127.0.0.1)', () => {
  it('reads the size and plans it', async () => {
    const imds = await server(() => ({ status: 200, body: 'Standard_NC4as_T4_v3' }));
    const r = await detectSku({ env: {}, readFile: NO_DMI, imdsEndpoint: imds.url, localResources });
    expect(r.source).toBe('imds');
    expect(r.size).toBe('Standard_NC4as_T4_v3');
    expect(r.plan.provider).toBe('cuda');
    expect(imds.requests).toEqual([
      { path: '/metadata/instance/compute/vmSize?api-version=2021-02-01&format=text', metadata: 'true' },
    ]);
    expect(localResources).not.toHaveBeenCalled();
  });

  it('takes the endpoint from AZURE_IMDS_ENDPOINT too', async () => {
    const imds = await server(() => ({ status: 200, body: 'standard_d4as_v4\n' }));
    const r = await detectSku({
      env: { AZURE_IMDS_ENDPOINT: `${imds.url}/` },
      readFile: NO_DMI,
      localResources,
    });
    expect(r).toMatchObject({ source: 'imds', size: 'Standard_D4as_v4' });
    expect(imds.requests).toHaveLength(1);
  });

  it('retries once after a 500', async () => {
    const imds = await server((n) =>
      n === 1 ? { status: 500, body: 'busy' } : { status: 200, body: 'Standard_E8s_v3' },
    );
    const r = await detectSku({ env: {}, readFile: NO_DMI, imdsEndpoint: imds.url, localResources });
    expect(r).toMatchObject({ source: 'imds', size: 'Standard_E8s_v3' });
    expect(imds.requests).toHaveLength(2);
  });

  it('falls back to local detection after a time-out and one retry', async () => {
    const imds = await server(() => null);
    const t0 = performance.now();
    const r = await detectSku({
      env: {},
      readFile: NO_DMI,
      imdsEndpoint: imds.url,
      imdsTimeoutMs: 150,
      localResources,
    });
    const elapsed = performance.now() - t0;
    expect(imds.requests).toHaveLength(2);
    expect(elapsed).toBeGreaterThanOrEqual(280);
    expect(elapsed).toBeLessThan(5000);
    expect(r.source).toBe('local');
    expect(r.size).toBeUndefined();
    expect(localResources).toHaveBeenCalledOnce();
    expect(r.plan.resources.vcpus).toBe(2);
    expect(r.plan.warnings.join('\n')).toMatch(/failed after 2 attempt\(s\) \(timed out after 150 ms\)/);
  });

  it('uses the default one-second time-out', async () => {
    const imds = await server(() => null);
    const t0 = performance.now();
    const r = await queryImdsVmSize(imds.url, { retries: 0 });
    expect(r).toMatchObject({ ok: false, attempts: 1 });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(950);
  });

  it('plans locally, keeping the name, when IMDS reports a size the catalogue lacks', async () => {
    const imds = await server(() => ({ status: 200, body: 'Standard_HB120rs_v3' }));
    const r = await detectSku({ env: {}, readFile: NO_DMI, imdsEndpoint: imds.url, localResources });
    expect(r).toMatchObject({ source: 'local', size: 'Standard_HB120rs_v3' });
    expect(r.plan.warnings.join('\n')).toMatch(/not in the catalogue/);
  });

  it('refuses an endpoint that is not plain http', async () => {
    await expect(queryImdsVmSize('https://127.0.0.1:1')).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(queryImdsVmSize('not a url')).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});

describe('detectSku off Azure', () => {
  const cases: [string, ReadTextFile][] = [
    ['DMI files absent', NO_DMI],
    ['another vendor', dmi('QEMU', 'none')],
    ['Hyper-V outside Azure (vendor matches, asset tag does not)', dmi(AZURE_DMI.sysVendor, 'None')],
    ['asset tag without the vendor', dmi('Dell Inc.', AZURE_DMI.chassisAssetTag)],
  ];
  for (const [name, readFile] of cases) {
    it(`${name}: makes no request and falls back at once`, async () => {
      const { calls, fetchImpl } = recordingFetch({ status: 200, body: 'Standard_D2as_v4' });
      const t0 = performance.now();
      const r = await detectSku({ env: {}, readFile, fetchImpl, localResources });
      expect(performance.now() - t0).toBeLessThan(500);
      expect(calls).toEqual([]);
      expect(r.source).toBe('local');
      expect(r.size).toBeUndefined();
      expect(r.plan.warnings).toEqual([]);
      expect(localResources).toHaveBeenCalledOnce();
    });
  }

  it('with the real http client, nothing reaches a listening server either', async () => {
    const imds = await server(() => ({ status: 200, body: 'Standard_D2as_v4' }));
    const get = vi.spyOn(http, 'get');
    const request = vi.spyOn(http, 'request');
    const r = await detectSku({ env: {}, readFile: NO_DMI, localResources });
    expect(r.source).toBe('local');
    expect(get).not.toHaveBeenCalled();
    expect(request).not.toHaveBeenCalled();
    expect(imds.requests).toEqual([]);
  });
});

describe('the node:http spies', () => {
  it('do see the real client, so the tripwire and the no-request checks can be trusted', async () => {
    const imds = await server(() => ({ status: 200, body: 'Standard_D2as_v4' }));
    const get = vi.spyOn(http, 'get');
    const r = await httpImdsFetch(`${imds.url}/x`, { headers: { Metadata: 'true' }, timeoutMs: 1000 });
    expect(r).toEqual({ status: 200, body: 'Standard_D2as_v4' });
    expect(get).toHaveBeenCalledOnce();
  });
});

describe('detectSku on an Azure VM (DMI says so)', () => {
  it('asks the default metadata address, through the injected fetch only', async () => {
    // Tripwire: should anything bypass fetchImpl, it throws here instead of sending a packet.
    const tripwire = () => {
      throw new Error('network tripwire: no real request may leave a test');
    };
    const get = vi.spyOn(http, 'get').mockImplementation(tripwire);
    const request = vi.spyOn(http, 'request').mockImplementation(tripwire);
    const { calls, fetchImpl } = recordingFetch({ status: 200, body: 'Standard_F8s_v2' });
    const r = await detectSku({ env: {}, readFile: AZURE, fetchImpl, localResources });
    expect(r).toMatchObject({ source: 'imds', size: 'Standard_F8s_v2' });
    expect(calls).toEqual([
      {
        url: 'http://169.254.169.254/metadata/instance/compute/vmSize?api-version=2021-02-01&format=text',
        headers: { Metadata: 'true' },
      },
    ]);
    expect(get).not.toHaveBeenCalled();
    expect(request).not.toHaveBeenCalled();
  });
});

describe('WORKER_SKU', () => {
  it('wins over IMDS and local detection', async () => {
    const imds = await server(() => ({ status: 200, body: 'Standard_D2as_v4' }));
    const { calls, fetchImpl } = recordingFetch();
    const r = await detectSku({
      env: { WORKER_SKU: ' standard_nc6s_v3 ', AZURE_IMDS_ENDPOINT: imds.url },
      readFile: AZURE,
      fetchImpl,
      localResources,
    });
    expect(r).toMatchObject({ source: 'env', size: 'Standard_NC6s_v3' });
    expect(r.plan.warnings.join('\n')).toMatch(/retired/);
    expect(calls).toEqual([]);
    expect(imds.requests).toEqual([]);
    expect(localResources).not.toHaveBeenCalled();
  });

  it('an unknown size is a typed error naming the nearest known sizes', async () => {
    const err = await detectSku({ env: { WORKER_SKU: 'Standard_Bogus_v1' }, readFile: NO_DMI }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(UnknownSkuError);
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.knownSizes).toContain('Standard_NC24ads_A100_v4');
    expect(err.message).toMatch(/Standard_Bogus_v1.*nearest known sizes: Standard_\w+, /);
  });
});

describe('detectLocalResources', () => {
  const files =
    (map: Record<string, string>): ReadTextFile =>
    async (path) => {
      if (path in map) return map[path]!;
      throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    };

  it('reads cores, memory, SMT and GPUs', async () => {
    const r = await detectLocalResources({
      readFile: files({ '/sys/devices/system/cpu/cpu0/topology/thread_siblings_list': '0,8\n' }),
      runNvidiaSmi: async () => '16384\n16384\n',
      availableParallelism: () => 16,
      totalmem: () => 64 * 2 ** 30,
    });
    expect(r).toEqual({ vcpus: 16, memoryGib: 64, gpus: [{ memoryGib: 16 }, { memoryGib: 16 }], smt: true });
  });

  it('without nvidia-smi there are no GPUs; cgroup limits lower cores and memory', async () => {
    const r = await detectLocalResources({
      readFile: files({
        '/sys/fs/cgroup/cpu.max': '150000 100000\n',
        '/sys/fs/cgroup/memory.max': `${4 * 2 ** 30}\n`,
        '/sys/devices/system/cpu/cpu0/topology/thread_siblings_list': '0\n',
      }),
      runNvidiaSmi: async () => null,
      availableParallelism: () => 16,
      totalmem: () => 64 * 2 ** 30,
    });
    expect(r).toEqual({ vcpus: 2, memoryGib: 4, gpus: [], smt: false });
  });

  it('leaves SMT unknown (planned as SMT) and ignores "max" cgroup limits', async () => {
    const r = await detectLocalResources({
      readFile: files({ '/sys/fs/cgroup/cpu.max': 'max 100000', '/sys/fs/cgroup/memory.max': 'max' }),
      runNvidiaSmi: async () => '',
      availableParallelism: () => 4,
      totalmem: () => 2 ** 33,
    });
    expect(r).toEqual({ vcpus: 4, memoryGib: 8, gpus: [] });
  });

  it('parses nvidia-smi output, skipping unreadable lines', () => {
    expect(parseNvidiaSmi('81920\n[N/A]\n\n40960\n')).toEqual([{ memoryGib: 80 }, { memoryGib: 40 }]);
  });

  it('runs on this machine without a network', async () => {
    const r = await detectLocalResources();
    expect(r.vcpus).toBeGreaterThanOrEqual(1);
    expect(r.memoryGib).toBeGreaterThan(0);
  });
});
