/**
 * "Which size am I?": WORKER_SKU, else Azure's Instance Metadata Service (only on a machine whose DMI
 * data says it is an Azure VM, or with an endpoint set explicitly), else the machine's own cores,
 * memory and GPUs.
 *
 * Off Azure nothing is sent anywhere: the metadata address is only ever used after the DMI check
 * passed, and the fallback to local detection costs two small file reads.
 */
import { execFile } from 'node:child_process';
import { readFile as fsReadFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import { EmbedpoolError } from '../errors';
import { findVmSize, getVmSize } from './catalogue';
import {
  type GpuResource,
  type PlanOptions,
  planForResources,
  planForSize,
  type Resources,
  type WorkerPlan,
} from './plan';

/** The link-local address IMDS answers on inside every Azure VM. Used only after `isAzureVm` said yes. */
export const AZURE_IMDS_DEFAULT_ENDPOINT = 'http://169.254.169.254';
export const IMDS_VM_SIZE_PATH = '/metadata/instance/compute/vmSize?api-version=2021-02-01&format=text';
export const IMDS_TIMEOUT_MS = 1000;
export const IMDS_RETRIES = 1;

/** What Hyper-V on Azure writes into the DMI tables (Azure's documented way to tell an Azure VM). */
export const AZURE_DMI = Object.freeze({
  sysVendorPath: '/sys/class/dmi/id/sys_vendor',
  sysVendor: 'Microsoft Corporation',
  chassisAssetTagPath: '/sys/class/dmi/id/chassis_asset_tag',
  chassisAssetTag: '7783-7084-3265-9085-8269-3286-77',
});

export type ReadTextFile = (path: string) => Promise<string>;

export interface ImdsResponse {
  status: number;
  body: string;
}

/** One GET with the given headers, failing after `timeoutMs` (connect and response together). */
export type ImdsFetch = (
  url: string,
  init: { headers: Record<string, string>; timeoutMs: number },
) => Promise<ImdsResponse>;

const defaultReadFile: ReadTextFile = (path) => fsReadFile(path, 'utf8');

/** True only when both DMI fields carry Azure's values; unreadable files (containers, macOS) say no. */
export async function isAzureVm(readFile: ReadTextFile = defaultReadFile): Promise<boolean> {
  try {
    const [vendor, tag] = await Promise.all([
      readFile(AZURE_DMI.sysVendorPath),
      readFile(AZURE_DMI.chassisAssetTagPath),
    ]);
    return vendor.trim() === AZURE_DMI.sysVendor && tag.trim() === AZURE_DMI.chassisAssetTag;
  } catch {
    return false;
  }
}

const MAX_IMDS_BODY = 4096;

/**
 * node:http with a private agent: no keep-alive socket outlives the call, and no proxy applies
 * (IMDS must be reached directly; global fetch may honour proxy settings in later Node versions).
 */
export const httpImdsFetch: ImdsFetch = (url, init) =>
  new Promise<ImdsResponse>((resolve, reject) => {
    const agent = new http.Agent({ keepAlive: false });
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const finish = (err: Error | null, value?: ImdsResponse) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      agent.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    const req = http.get(url, { headers: init.headers, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
        if (body.length > MAX_IMDS_BODY) req.destroy(new Error('metadata response too large'));
      });
      res.on('end', () => finish(null, { status: res.statusCode ?? 0, body }));
      res.on('error', (err) => finish(err));
      res.on('close', () => finish(new Error('connection closed before the response ended')));
    });
    timer = setTimeout(() => req.destroy(new Error(`timed out after ${init.timeoutMs} ms`)), init.timeoutMs);
    req.on('error', (err) => finish(err));
  });

export interface ImdsQueryOptions {
  fetchImpl?: ImdsFetch;
  timeoutMs?: number;
  retries?: number;
}

export type ImdsResult =
  | { ok: true; size: string; attempts: number }
  | { ok: false; error: string; attempts: number };

/** The VM size from IMDS: `timeoutMs` per attempt, `retries` more attempts after a failure. */
export async function queryImdsVmSize(endpoint: string, opts: ImdsQueryOptions = {}): Promise<ImdsResult> {
  let base: URL;
  try {
    base = new URL(endpoint);
  } catch {
    throw new EmbedpoolError('CONFIG_INVALID', `AZURE_IMDS_ENDPOINT is not a URL: "${endpoint}"`);
  }
  if (base.protocol !== 'http:') {
    throw new EmbedpoolError('CONFIG_INVALID', `AZURE_IMDS_ENDPOINT must be http:, got "${endpoint}"`);
  }
  const url = `${base.origin}${base.pathname.replace(/\/+$/, '')}${IMDS_VM_SIZE_PATH}`;
  const fetchImpl = opts.fetchImpl ?? httpImdsFetch;
  const timeoutMs = opts.timeoutMs ?? IMDS_TIMEOUT_MS;
  const attempts = 1 + Math.max(0, opts.retries ?? IMDS_RETRIES);
  let error = 'no attempt made';
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const res = await fetchImpl(url, { headers: { Metadata: 'true' }, timeoutMs });
      const size = res.body.trim();
      if (res.status === 200 && /^[A-Za-z0-9_-]+$/.test(size)) return { ok: true, size, attempts: attempt };
      error = res.status === 200 ? `unexpected body "${size.slice(0, 80)}"` : `HTTP ${res.status}`;
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    }
  }
  return { ok: false, error, attempts };
}

export interface LocalDetectionOptions {
  readFile?: ReadTextFile;
  /** stdout of `nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits`, null when absent. */
  runNvidiaSmi?: () => Promise<string | null>;
  availableParallelism?: () => number;
  totalmem?: () => number;
}

export const NVIDIA_SMI_TIMEOUT_MS = 3000;

/** Runs nvidia-smi when it is on PATH; absent, failing or slow means no usable GPU. */
export function runNvidiaSmi(): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(
      'nvidia-smi',
      ['--query-gpu=memory.total', '--format=csv,noheader,nounits'],
      { timeout: NVIDIA_SMI_TIMEOUT_MS, windowsHide: true },
      (err, stdout) => resolve(err ? null : stdout),
    );
  });
}

/** One GPU per line, memory in MiB. Lines that are not numbers ("[N/A]") are skipped. */
export function parseNvidiaSmi(stdout: string): GpuResource[] {
  return stdout
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => /^\d+(\.\d+)?$/.test(l))
    .map((mib) => ({ memoryGib: Number(mib) / 1024 }))
    .filter((g) => g.memoryGib > 0);
}

async function tryRead(readFile: ReadTextFile, path: string): Promise<string | undefined> {
  try {
    return (await readFile(path)).trim();
  } catch {
    return undefined;
  }
}

/**
 * The machine's cores, memory and GPUs. A cgroup v2 CPU quota or memory limit (containers) lowers
 * what the host reports; SMT comes from cpu0's sibling list (unknown: assumed, as on most Azure sizes).
 */
export async function detectLocalResources(opts: LocalDetectionOptions = {}): Promise<Resources> {
  const readFile = opts.readFile ?? defaultReadFile;
  let vcpus = (opts.availableParallelism ?? os.availableParallelism)();
  let memoryBytes = (opts.totalmem ?? os.totalmem)();
  const [cpuMax, memMax, siblings, smi] = await Promise.all([
    tryRead(readFile, '/sys/fs/cgroup/cpu.max'),
    tryRead(readFile, '/sys/fs/cgroup/memory.max'),
    tryRead(readFile, '/sys/devices/system/cpu/cpu0/topology/thread_siblings_list'),
    (opts.runNvidiaSmi ?? runNvidiaSmi)(),
  ]);
  const quota = /^(\d+)\s+(\d+)$/.exec(cpuMax ?? '');
  if (quota) vcpus = Math.max(1, Math.min(vcpus, Math.ceil(Number(quota[1]) / Number(quota[2]))));
  if (memMax && /^\d+$/.test(memMax)) memoryBytes = Math.min(memoryBytes, Number(memMax));
  const resources: Resources = {
    vcpus,
    memoryGib: memoryBytes / 2 ** 30,
    gpus: smi === null ? [] : parseNvidiaSmi(smi),
  };
  if (siblings !== undefined) resources.smt = /[,-]/.test(siblings);
  return resources;
}

export type SkuSource = 'env' | 'imds' | 'local';

export interface DetectSkuOptions {
  env?: Record<string, string | undefined>;
  /** Reads DMI (and, for local detection, cgroup and topology) files. */
  readFile?: ReadTextFile;
  fetchImpl?: ImdsFetch;
  /** Overrides AZURE_IMDS_ENDPOINT; either one makes detection query IMDS without the DMI check. */
  imdsEndpoint?: string;
  imdsTimeoutMs?: number;
  imdsRetries?: number;
  /** Local detection (default `detectLocalResources` with `readFile`). */
  localResources?: () => Promise<Resources>;
  planOptions?: PlanOptions;
}

export interface DetectedSku {
  source: SkuSource;
  size?: string;
  plan: WorkerPlan;
}

export async function detectSku(opts: DetectSkuOptions = {}): Promise<DetectedSku> {
  const env = opts.env ?? process.env;
  const readFile = opts.readFile ?? defaultReadFile;
  const planOptions = opts.planOptions ?? {};

  const named = env.WORKER_SKU?.trim();
  if (named) {
    const vm = getVmSize(named);
    return { source: 'env', size: vm.size, plan: planForSize(vm, planOptions) };
  }

  const explicit = opts.imdsEndpoint ?? (env.AZURE_IMDS_ENDPOINT?.trim() || undefined);
  const endpoint = explicit ?? ((await isAzureVm(readFile)) ? AZURE_IMDS_DEFAULT_ENDPOINT : undefined);
  const warnings: string[] = [];
  let reported: string | undefined;
  if (endpoint !== undefined) {
    const r = await queryImdsVmSize(endpoint, {
      ...(opts.fetchImpl ? { fetchImpl: opts.fetchImpl } : {}),
      ...(opts.imdsTimeoutMs === undefined ? {} : { timeoutMs: opts.imdsTimeoutMs }),
      ...(opts.imdsRetries === undefined ? {} : { retries: opts.imdsRetries }),
    });
    if (r.ok) {
      const vm = findVmSize(r.size);
      if (vm) return { source: 'imds', size: vm.size, plan: planForSize(vm, planOptions) };
      reported = r.size;
      warnings.push(`Azure size ${r.size} is not in the catalogue; planned from local resources`);
    } else {
      warnings.push(
        `Azure metadata service at ${endpoint} failed after ${r.attempts} attempt(s) (${r.error}); ` +
          'planned from local resources',
      );
    }
  }
  const resources = await (opts.localResources ?? (() => detectLocalResources({ readFile })))();
  const plan = planForResources(resources, planOptions);
  plan.warnings.push(...warnings);
  return { source: 'local', ...(reported ? { size: reported } : {}), plan };
}
