/**
 * Worker plans: how many worker processes a machine runs, and each one's runtime settings, from its
 * vCPUs, RAM and GPUs (or its Azure size). The numbers are a starting point that fits the machine;
 * `embedpool calibrate` measures the real optimum of the inference part on the machine itself.
 *
 * CPU sizes (fp32 model, one worker process):
 *   - Most Azure vCPUs are SMT siblings (two per physical core; see `hasSmt`). onnxruntime's intra-op
 *     threads want one physical core each: a second thread on a core's sibling adds sync overhead and
 *     little FMA throughput (its own default, intra-op 0, also means "physical cores").
 *   - Decoding + resizing a photo costs ~5-20 ms of one core; ViT-B/14 at 224 px costs ~150 ms of one
 *     core per image. At full inference speed decoding therefore needs at most ~20/150 = 0.13 of the
 *     inference cores. With SMT the decode threads run on the spare siblings of the inference cores
 *     (`ceil(cores / 4)`, headroom for large images and bursts); without SMT they get
 *     `ceil(vCPUs / 8)` cores of their own on 8+ vCPUs, and share cores below that (reserving one
 *     core out of 2-4 would idle 25-50 % of the machine for a ~10 % duty cycle).
 *   - One session scales poorly past ~16 intra-op threads (synchronisation, L3/CCX and NUMA
 *     boundaries), so larger machines run several sessions (INFERENCE_THREADS) of <= 16 threads each.
 *   - Batching buys little on CPU (ViT-B's matrices are already 257 tokens tall at batch 1) and adds
 *     latency linearly, so batches stay small (4; 8 for sessions of 5+ threads) and the batcher waits
 *     only 2 ms for stragglers.
 *
 * GPU sizes (fp16 model, CUDA):
 *   - One worker process per GPU, pinned by CUDA_DEVICE_ID, with that GPU's share of the vCPUs.
 *   - Two sessions per GPU, so one run's host-side work (copying the batch in and the vectors out;
 *     onnxruntime-node has no IO binding) overlaps the other's kernels. One intra-op thread each: with
 *     the CUDA provider the CPU threads only run the few host-side nodes.
 *   - A GPU embeds hundreds of images per second, far more than one core decodes, so decoding gets all
 *     of the process's vCPUs but one (the event loop: queue, batch assembly, Redis).
 *   - Batches of 32 (64 on GPUs with 32 GiB or more) keep the GPU busy; waiting 10 ms to fill a batch
 *     pays on a GPU, where a batch of 32 costs little more than a batch of 1.
 *
 * Both: WORKER_CONCURRENCY (jobs prefetched from the queue) covers the batches running, the next batch
 * filling and the images being decoded; UV_THREADPOOL_SIZE is the decode threads plus two spare libuv
 * threads for fs and DNS work (never below libuv's default of 4).
 */
import type { ExecutionProvider } from '../engine';
import { EmbedpoolError } from '../errors';
import { getVmSize, hasSmt, retiredOn } from './catalogue';
import { PlanDoesNotFitError } from './errors';
import type { VmSize } from './types';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** fp32 and int8 (`embedpool model quantize`) on CPU, fp16 on GPUs. */
export type ModelVariant = 'fp32' | 'fp16' | 'int8';

export interface GpuResource {
  memoryGib: number;
  name?: string;
}

/** What a machine offers the worker: the input of `planForResources`. */
export interface Resources {
  vcpus: number;
  memoryGib: number;
  gpus: GpuResource[];
  /** Whether vCPUs are SMT siblings (two per physical core). Default true: Azure's norm since Dv3. */
  smt?: boolean;
}

/**
 * The memory estimate's constants. Host RAM of one worker process:
 *
 *   CPU:  nodeBaseline
 *         + sessions x modelBytes x cpuSessionFactor             (weights + onnxruntime's prepacked copies;
 *                                                                 cpuInt8SessionFactor for int8 models)
 *         + sessions x batch x cpuActivationBytesPerImage        (arena for one run's intermediate tensors)
 *         + (sessions + 1) x batch x inputBytesPerImage          (batch tensors: running + filling)
 *         + decodeThreads x decodeBytesPerSlot                    (compressed input + decoded pixels)
 *         + workerConcurrency x queuedImageBytes                  (prefetched jobs, preprocessed tensors)
 *   CUDA: the same, with gpuHostOverheadBytes + sessions x modelBytes x gpuHostSessionFactor in place of
 *         the session and activation terms.
 *
 * GPU memory of each device (one process per device):
 *
 *   gpuContextBytes + sessions x modelBytes x gpuSessionFactor + sessions x batch x gpuActivationBytesPerImage
 *
 * The processes' host total must stay within hostBudgetFraction of the RAM (the OS, page cache and any
 * co-located service keep the rest); each device's within gpuBudgetFraction of its memory.
 */
export interface MemoryModel {
  nodeBaselineBytes: number;
  cpuSessionFactor: number;
  /** The same for an int8 model: onnxruntime keeps packed int8 weights next to the file's. */
  cpuInt8SessionFactor?: number;
  cpuActivationBytesPerImage: number;
  gpuHostOverheadBytes: number;
  gpuHostSessionFactor: number;
  gpuContextBytes: number;
  gpuSessionFactor: number;
  gpuActivationBytesPerImage: number;
  inputBytesPerImage: number;
  decodeBytesPerSlot: number;
  queuedImageBytes: number;
  hostBudgetFraction: number;
  gpuBudgetFraction: number;
}

export const DEFAULT_MEMORY_MODEL: Readonly<MemoryModel> = Object.freeze({
  // V8 heap, sharp/libvips, ioredis, BullMQ, pino, prom-client: a loaded idle worker.
  nodeBaselineBytes: 256 * MiB,
  // Measured with onnxruntime-node 1.30 (CPU EP, graph optimisation 'all') on the full-size random
  // ViT-B/14: one session adds ~580 MB of RSS for a 343 MB file (1.68x); 1.8 leaves margin.
  cpuSessionFactor: 1.8,
  // Measured the same way on the int8 copy (embedpool model quantize): ~187 MB of RSS for an 88.5 MB
  // file (2.1x); 2.4 leaves margin.
  cpuInt8SessionFactor: 2.4,
  // Same measurement: RSS grows ~25 MB per image of batch (batches 8-32, fp32, 224 px); rounded up.
  cpuActivationBytesPerImage: 32 * MiB,
  // CUDA runtime, cuBLAS/cuDNN and pinned staging in the process: an estimate, not measured here.
  gpuHostOverheadBytes: 1.5 * GiB,
  gpuHostSessionFactor: 1,
  // CUDA context plus cuBLAS/cuDNN workspaces on the device: an estimate, not measured here.
  gpuContextBytes: 1 * GiB,
  gpuSessionFactor: 1.5,
  // Half the fp32 activation figure (fp16), doubled for the CUDA arena's power-of-two growth.
  gpuActivationBytesPerImage: 24 * MiB,
  inputBytesPerImage: 3 * 224 * 224 * 4,
  // A compressed photo (MAX_IMAGE_BYTES defaults to 20 MiB) plus a 24-megapixel RGB decode and libvips'
  // working buffers. The 100-megapixel worst case MAX_IMAGE_PIXELS allows (~300 MB) is not covered.
  decodeBytesPerSlot: 128 * MiB,
  queuedImageBytes: 3 * MiB,
  hostBudgetFraction: 0.8,
  gpuBudgetFraction: 0.9,
});

/**
 * Model file sizes (Xenova/dinov2-base `onnx/model.onnx` ~347 MB, `onnx/model_fp16.onnx` ~173 MB; its int8
 * copy from `embedpool model quantize` ~88.5 MB: int8 weights plus a float32 scale per output column).
 */
export const DEFAULT_MODEL_BYTES: Readonly<Record<ModelVariant, number>> = Object.freeze({
  fp32: 347_000_000,
  fp16: 174_000_000,
  int8: 88_500_000,
});

export interface PlanOptions {
  /** Force a provider (e.g. 'cpu' on a GPU machine); default cuda when there are GPUs. */
  provider?: ExecutionProvider;
  batchSize?: number;
  batchWaitMs?: number;
  intraOpThreads?: number;
  inferenceThreads?: number;
  decodeThreads?: number;
  workerConcurrency?: number;
  /**
   * The model's precision: 'int8' plans a CPU worker for an `embedpool model quantize` model (CPU only);
   * default fp32 on CPU, fp16 on GPUs.
   */
  modelVariant?: ModelVariant;
  /** Bytes of the model file in use (default: DEFAULT_MODEL_BYTES of the variant). */
  modelBytes?: number;
  memory?: Partial<MemoryModel>;
}

export interface ProcessPlan {
  index: number;
  /** The GPU this process is pinned to; null on CPU. */
  cudaDeviceId: number | null;
  /** The vCPUs this process's threads are sized for. */
  vcpus: number;
}

export interface HostMemory {
  baselineBytes: number;
  runtimeBytes: number;
  sessionsBytes: number;
  activationsBytes: number;
  batchBuffersBytes: number;
  decodeBytes: number;
  prefetchBytes: number;
  perProcessBytes: number;
  totalBytes: number;
  budgetBytes: number;
}

export interface GpuMemory {
  contextBytes: number;
  sessionsBytes: number;
  activationsBytes: number;
  perDeviceBytes: number;
  budgetBytes: number;
}

export interface MemoryEstimate {
  host: HostMemory;
  /** null on CPU plans. */
  gpu: GpuMemory | null;
  fits: boolean;
}

export interface WorkerPlan {
  /** The Azure size, when the plan came from the catalogue. */
  size: string | null;
  resources: Required<Resources>;
  physicalCores: number;
  provider: ExecutionProvider;
  modelVariant: ModelVariant;
  modelBytes: number;
  /** Worker processes on the machine: one per GPU, else one. */
  processes: ProcessPlan[];
  /** Per session. */
  intraOpThreads: number;
  /** Sessions per process (INFERENCE_THREADS). */
  inferenceThreads: number;
  /** Concurrent decodes per process (DECODE_CONCURRENCY; they run on the libuv pool). */
  decodeThreads: number;
  batchSize: number;
  batchWaitMs: number;
  /** Jobs each process takes from the queue at once (WORKER_CONCURRENCY). */
  workerConcurrency: number;
  uvThreadpoolSize: number;
  memory: MemoryEstimate;
  warnings: string[];
  /** Why the numbers are what they are, one line each. */
  notes: string[];
}

const MAX_INTRA_OP_PER_SESSION = 16;
const MAX_BATCH = 1024; // MAX_BATCH_SIZE's bound in the config schema
const MAX_UV_THREADPOOL = 1024; // libuv's own cap

function invalid(message: string): EmbedpoolError {
  return new EmbedpoolError('CONFIG_INVALID', message);
}

function positiveInt(value: number | undefined, name: string, max = Number.MAX_SAFE_INTEGER): void {
  if (value === undefined) return;
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw invalid(`${name} must be an integer from 1 to ${max}, got ${value}`);
  }
}

function normalizeResources(r: Resources): Required<Resources> {
  if (!Number.isSafeInteger(r.vcpus) || r.vcpus < 1)
    throw invalid(`vcpus must be a positive integer, got ${r.vcpus}`);
  if (!(Number.isFinite(r.memoryGib) && r.memoryGib > 0)) {
    throw invalid(`memoryGib must be a positive number, got ${r.memoryGib}`);
  }
  for (const [i, g] of r.gpus.entries()) {
    if (!(Number.isFinite(g.memoryGib) && g.memoryGib > 0)) {
      throw invalid(`gpu ${i} memoryGib must be a positive number, got ${g.memoryGib}`);
    }
  }
  return { vcpus: r.vcpus, memoryGib: r.memoryGib, gpus: r.gpus.map((g) => ({ ...g })), smt: r.smt ?? true };
}

const gib = (bytes: number) => `${(bytes / GiB).toFixed(2)} GiB`;

interface Shape {
  provider: ExecutionProvider;
  processes: number;
  sessions: number;
  batch: number;
  decode: number;
  concurrency: number;
  modelBytes: number;
  gpuMemoryGib: number | null;
  /** int8 models take a larger factor of their (small) file. */
  int8?: boolean;
}

/** The estimate documented on MemoryModel. */
export function estimateMemory(
  shape: Shape,
  memoryGib: number,
  model: MemoryModel = DEFAULT_MEMORY_MODEL,
): MemoryEstimate {
  const cuda = shape.provider === 'cuda';
  const { sessions, batch } = shape;
  const baselineBytes = model.nodeBaselineBytes;
  const runtimeBytes = cuda ? model.gpuHostOverheadBytes : 0;
  const sessionsBytes =
    sessions *
    shape.modelBytes *
    (cuda
      ? model.gpuHostSessionFactor
      : shape.int8
        ? (model.cpuInt8SessionFactor ?? model.cpuSessionFactor)
        : model.cpuSessionFactor);
  const activationsBytes = cuda ? 0 : sessions * batch * model.cpuActivationBytesPerImage;
  const batchBuffersBytes = (sessions + 1) * batch * model.inputBytesPerImage;
  const decodeBytes = shape.decode * model.decodeBytesPerSlot;
  const prefetchBytes = shape.concurrency * model.queuedImageBytes;
  const perProcessBytes =
    baselineBytes +
    runtimeBytes +
    sessionsBytes +
    activationsBytes +
    batchBuffersBytes +
    decodeBytes +
    prefetchBytes;
  const host: HostMemory = {
    baselineBytes,
    runtimeBytes,
    sessionsBytes,
    activationsBytes,
    batchBuffersBytes,
    decodeBytes,
    prefetchBytes,
    perProcessBytes,
    totalBytes: perProcessBytes * shape.processes,
    budgetBytes: memoryGib * GiB * model.hostBudgetFraction,
  };
  let gpu: GpuMemory | null = null;
  if (cuda) {
    const contextBytes = model.gpuContextBytes;
    const gpuSessions = sessions * shape.modelBytes * model.gpuSessionFactor;
    const gpuActivations = sessions * batch * model.gpuActivationBytesPerImage;
    gpu = {
      contextBytes,
      sessionsBytes: gpuSessions,
      activationsBytes: gpuActivations,
      perDeviceBytes: contextBytes + gpuSessions + gpuActivations,
      budgetBytes: (shape.gpuMemoryGib ?? 0) * GiB * model.gpuBudgetFraction,
    };
  }
  const fits = host.totalBytes <= host.budgetBytes && (gpu === null || gpu.perDeviceBytes <= gpu.budgetBytes);
  return { host, gpu, fits };
}

/** Plans worker processes for a machine described by its resources (local detection, calibration). */
export function planForResources(resources: Resources, opts: PlanOptions = {}): WorkerPlan {
  return buildPlan(normalizeResources(resources), opts, null);
}

/** Plans for a catalogue size (by name, case-insensitive) or a VmSize-shaped description of one. */
export function planForSize(size: string | VmSize, opts: PlanOptions = {}): WorkerPlan {
  const vm = typeof size === 'string' ? getVmSize(size) : size;
  if (vm.gpuCount > 0 && !vm.gpuMemoryGib) throw invalid(`${vm.size}: GPU size without gpu_memory_gib`);
  const resources = normalizeResources({
    vcpus: vm.vcpu,
    memoryGib: vm.memoryGib,
    gpus: Array.from({ length: vm.gpuCount }, () => ({
      memoryGib: vm.gpuMemoryGib ?? 0,
      ...(vm.gpuModel ? { name: vm.gpuModel } : {}),
    })),
    smt: hasSmt(vm.size),
  });
  const retired = retiredOn(vm);
  const extra = retired ? [`${vm.size} is retired (${retired}): plan a move to a current size`] : [];
  return buildPlan(resources, opts, vm.size, extra);
}

/** What a worker process runs with, before the memory check: the plan's numbers and why. */
interface Layout {
  processCount: number;
  vcpusPerProcess: number;
  intra: number;
  sessions: number;
  decode: number;
  batch: number;
  batchWaitMs: number;
  gpuMemoryGib: number | null;
}

/** One process per GPU; its vCPUs mostly decode (a GPU embeds far faster than one core decodes). */
function gpuLayout(res: Required<Resources>, opts: PlanOptions, notes: string[], warnings: string[]): Layout {
  const processCount = res.gpus.length;
  const vcpusPerProcess = Math.max(1, Math.floor(res.vcpus / processCount));
  const gpuMemoryGib = Math.min(...res.gpus.map((g) => g.memoryGib));
  const decode = opts.decodeThreads ?? Math.max(1, vcpusPerProcess - 1);
  const intra = opts.intraOpThreads ?? 1;
  const sessions = opts.inferenceThreads ?? 2;
  const batch = opts.batchSize ?? (gpuMemoryGib >= 32 ? 64 : 32);
  const batchWaitMs = opts.batchWaitMs ?? 10;
  notes.push(
    `one process per GPU (${processCount}), ${vcpusPerProcess} vCPUs each`,
    `decoding gets ${decode} of them: a GPU embeds far faster than one core decodes`,
    `${sessions} CUDA sessions per GPU overlap host copies with kernels; ${intra} intra-op thread each`,
    `batch ${batch} on ${gpuMemoryGib} GiB GPUs, waiting up to ${batchWaitMs} ms to fill`,
  );
  if (res.vcpus < processCount) {
    warnings.push(`${res.vcpus} vCPUs for ${processCount} GPUs: decoding will starve the GPUs`);
  }
  return { processCount, vcpusPerProcess, intra, sessions, decode, batch, batchWaitMs, gpuMemoryGib };
}

/** One process; intra-op sessions on the physical cores, decoding on SMT siblings or a few cores. */
function cpuLayout(
  res: Required<Resources>,
  opts: PlanOptions,
  m: { physicalCores: number; modelVariant: ModelVariant },
  notes: string[],
  warnings: string[],
): Layout {
  const { physicalCores, modelVariant } = m;
  let decode: number;
  let intra: number;
  let sessions: number;
  const processCount = 1;
  const vcpusPerProcess = res.vcpus;
  let inferenceCores: number;
  if (res.smt) {
    decode = opts.decodeThreads ?? Math.max(1, Math.ceil(physicalCores / 4));
    inferenceCores = physicalCores;
    notes.push(
      `${res.vcpus} vCPUs are SMT siblings: ${physicalCores} physical cores carry the intra-op threads, ` +
        `${decode} decode thread(s) use the spare siblings`,
    );
  } else {
    decode = opts.decodeThreads ?? Math.max(1, Math.ceil(res.vcpus / 8));
    inferenceCores = res.vcpus < 8 ? res.vcpus : Math.max(1, res.vcpus - decode);
    notes.push(
      res.vcpus < 8
        ? `${res.vcpus} whole cores: inference uses all of them and ${decode} decode thread(s) share them ` +
            '(decoding is ~10 % of the work; reserving a core would idle more than it saves)'
        : `${res.vcpus} whole cores: ${decode} for decoding, ${inferenceCores} for inference`,
    );
  }
  if (opts.intraOpThreads !== undefined) {
    intra = opts.intraOpThreads;
    sessions = opts.inferenceThreads ?? Math.max(1, Math.floor(inferenceCores / intra));
  } else {
    sessions = opts.inferenceThreads ?? Math.ceil(inferenceCores / MAX_INTRA_OP_PER_SESSION);
    intra = Math.max(1, Math.floor(inferenceCores / sessions));
  }
  const batch = opts.batchSize ?? (intra <= 4 ? 4 : 8);
  const batchWaitMs = opts.batchWaitMs ?? 2;
  notes.push(
    `${sessions} session(s) x ${intra} intra-op threads (one session scales poorly past ` +
      `${MAX_INTRA_OP_PER_SESSION} threads)`,
    `batch ${batch}, wait ${batchWaitMs} ms: batching buys little on CPU and adds latency`,
  );
  if (modelVariant === 'int8') {
    notes.push(
      'int8 model (embedpool model quantize): ~2-2.9x the fp32 images/s on CPUs with VNNI ' +
        '(AVX512-VNNI, AVX-VNNI), less on AVX2 only; see docs/sizing.md',
    );
  }
  if (intra * sessions > res.vcpus) {
    warnings.push(`${intra * sessions} intra-op threads oversubscribe ${res.vcpus} vCPUs`);
  }
  return { processCount, vcpusPerProcess, intra, sessions, decode, batch, batchWaitMs, gpuMemoryGib: null };
}

/** Refuses options no plan can honour; the provider (GPUs: cuda) and model variant the plan is for. */
function checkPlanOptions(
  res: Required<Resources>,
  opts: PlanOptions,
): { provider: ExecutionProvider; modelVariant: ModelVariant } {
  positiveInt(opts.batchSize, 'batchSize', MAX_BATCH);
  positiveInt(opts.intraOpThreads, 'intraOpThreads');
  positiveInt(opts.inferenceThreads, 'inferenceThreads');
  positiveInt(opts.decodeThreads, 'decodeThreads');
  positiveInt(opts.workerConcurrency, 'workerConcurrency');
  if (opts.batchWaitMs !== undefined && !(Number.isSafeInteger(opts.batchWaitMs) && opts.batchWaitMs >= 0)) {
    throw invalid(`batchWaitMs must be a non-negative integer, got ${opts.batchWaitMs}`);
  }
  if (opts.modelBytes !== undefined && !(opts.modelBytes > 0)) throw invalid('modelBytes must be positive');

  const provider: ExecutionProvider = opts.provider ?? (res.gpus.length > 0 ? 'cuda' : 'cpu');
  if (provider === 'cuda' && res.gpus.length === 0) throw invalid('the cuda provider needs at least one GPU');
  if (opts.modelVariant === 'int8' && provider === 'cuda') {
    throw invalid('int8 models (embedpool model quantize) run on CPU only; GPUs use the fp16 model');
  }
  if (opts.modelVariant === 'fp16' && provider === 'cpu') {
    throw invalid('the fp16 model is for GPUs; on CPU use fp32 or int8 (embedpool model quantize)');
  }
  const modelVariant: ModelVariant = opts.modelVariant ?? (provider === 'cuda' ? 'fp16' : 'fp32');
  return { provider, modelVariant };
}

function buildPlan(
  res: Required<Resources>,
  opts: PlanOptions,
  size: string | null,
  extraWarnings: string[] = [],
): WorkerPlan {
  const { provider, modelVariant } = checkPlanOptions(res, opts);
  const modelBytes = opts.modelBytes ?? DEFAULT_MODEL_BYTES[modelVariant];
  const memoryModel: MemoryModel = { ...DEFAULT_MEMORY_MODEL, ...opts.memory };
  const physicalCores = res.smt ? Math.max(1, Math.floor(res.vcpus / 2)) : res.vcpus;
  const notes: string[] = [];
  const warnings = [...extraWarnings];

  const layout =
    provider === 'cuda'
      ? gpuLayout(res, opts, notes, warnings)
      : cpuLayout(res, opts, { physicalCores, modelVariant }, notes, warnings);
  const { processCount, vcpusPerProcess, intra, sessions, decode, gpuMemoryGib } = layout;
  let { batch } = layout;
  const { batchWaitMs } = layout;

  const concurrencyFor = (b: number) => opts.workerConcurrency ?? (sessions + 1) * b + decode;
  const estimate = (b: number) =>
    estimateMemory(
      {
        provider,
        processes: processCount,
        sessions,
        batch: b,
        decode,
        concurrency: concurrencyFor(b),
        modelBytes,
        gpuMemoryGib,
        int8: modelVariant === 'int8',
      },
      res.memoryGib,
      memoryModel,
    );

  let memory = estimate(batch);
  // A batch we chose ourselves shrinks to fit; one the caller asked for is refused as it is.
  if (!memory.fits && opts.batchSize === undefined) {
    const wanted = batch;
    while (!memory.fits && batch > 1) {
      batch = Math.floor(batch / 2);
      memory = estimate(batch);
    }
    if (memory.fits) warnings.push(`batch reduced from ${wanted} to ${batch} to fit memory`);
  }
  if (!memory.fits) throw doesNotFit(memory, size, res, { sessions, batch, processCount });

  return {
    size,
    resources: res,
    physicalCores,
    provider,
    modelVariant,
    modelBytes,
    processes: Array.from({ length: processCount }, (_, index) => ({
      index,
      cudaDeviceId: provider === 'cuda' ? index : null,
      vcpus: vcpusPerProcess,
    })),
    intraOpThreads: intra,
    inferenceThreads: sessions,
    decodeThreads: decode,
    batchSize: batch,
    batchWaitMs,
    workerConcurrency: concurrencyFor(batch),
    uvThreadpoolSize: Math.min(MAX_UV_THREADPOOL, Math.max(4, decode + 2)),
    memory,
    warnings,
    notes,
  };
}

function doesNotFit(
  memory: MemoryEstimate,
  size: string | null,
  res: Required<Resources>,
  shape: { sessions: number; batch: number; processCount: number },
): PlanDoesNotFitError {
  const what = size ?? `${res.vcpus} vCPUs / ${res.memoryGib} GiB`;
  const layout = `${shape.processCount} process(es) x ${shape.sessions} session(s), batch ${shape.batch}`;
  const { host, gpu } = memory;
  if (gpu && gpu.perDeviceBytes > gpu.budgetBytes) {
    return new PlanDoesNotFitError(
      `plan does not fit ${what}: ${layout} needs ~${gib(gpu.perDeviceBytes)} per GPU, ` +
        `budget ${gib(gpu.budgetBytes)}`,
      { resource: 'gpu', requiredBytes: gpu.perDeviceBytes, budgetBytes: gpu.budgetBytes, breakdown: gpu },
    );
  }
  return new PlanDoesNotFitError(
    `plan does not fit ${what}: ${layout} needs ~${gib(host.totalBytes)} of RAM, budget ${gib(host.budgetBytes)}`,
    { resource: 'host', requiredBytes: host.totalBytes, budgetBytes: host.budgetBytes, breakdown: host },
  );
}

export type WorkerEnv = Record<string, string>;

/** The environment of each worker process of the plan (index i runs on GPU i under CUDA). */
export function planToEnv(plan: WorkerPlan): WorkerEnv[] {
  return plan.processes.map((p) => ({
    EXECUTION_PROVIDER: plan.provider,
    ...(p.cudaDeviceId === null ? {} : { CUDA_DEVICE_ID: String(p.cudaDeviceId) }),
    INTRA_OP_THREADS: String(plan.intraOpThreads),
    INFERENCE_THREADS: String(plan.inferenceThreads),
    DECODE_CONCURRENCY: String(plan.decodeThreads),
    MAX_BATCH_SIZE: String(plan.batchSize),
    BATCH_WAIT_MS: String(plan.batchWaitMs),
    WORKER_CONCURRENCY: String(plan.workerConcurrency),
    UV_THREADPOOL_SIZE: String(plan.uvThreadpoolSize),
  }));
}

/** `KEY=value` lines (values here never need quoting), with optional `#` comment lines first. */
export function formatEnvFile(env: WorkerEnv, comments: string[] = []): string {
  const head = comments.map((c) => `# ${c}\n`).join('');
  return (
    head +
    Object.entries(env)
      .map(([k, v]) => `${k}=${v}\n`)
      .join('')
  );
}
