import { DINOV2_BASE_CONFIG, type Dinov2Config, mlpHiddenSize } from '../model';
import type { VmSize } from './types';

/**
 * What bounds a GPU size: the GPUs' model rate, or how many images its vCPUs can fetch, decode and hand
 * over. The CPU side comes from the pipeline benchmark (`npm run bench -- --sections pipeline`: a
 * near-zero-cost model stands in for the GPU, so the worker's CPU per image is the pipeline's alone); the
 * GPU side is an estimate from the model's FLOPs and the GPU's datasheet peak, until `bench/gpu.sh` has
 * measured that GPU.
 */

/**
 * The pipeline benchmark's worker CPU per image (docs/performance.md, "Pipeline cost per image"), copied from
 * the committed result file below (feed.test.ts checks the two agree).
 */
export const MEASURED_WORKER_CPU = {
  /**
   * Worker process CPU ms per image, the median of the load phases (/score 1 and 8 per request, jobs inline
   * and blob, ingestion; not the one-client idle phase): read the bytes, decode, batch, hand back.
   */
  msPerImage: 9.02,
  /** The same image decoded alone (sharp decode + resize + normalize), same run: its fastest reading. */
  decodeAloneMs: 5.89,
  image: 'china.jpg, 640x427 JPEG, 196 KB',
  machine: '2-vCPU AMD EPYC (development VM, nothing else running; load average 1.55 at the start)',
  measuredOn: '2026-12-04',
  command: 'npm run bench -- --sections pipeline',
  /** The run these figures come from, relative to the repository root. */
  resultFile: 'bench/results/2026-12-04-vm-pipeline-s4-dist.json',
} as const;

/**
 * Dense FP16 tensor-core peak per GPU, from NVIDIA's datasheets (T4: 65 TFLOPS; V100 PCIe: 112, SXM2: 125;
 * A100 40/80 GB, PCIe and SXM4: 312; A10: 125; H100 NVL (Azure's "H100 PCIe 94GB"): 835; H100 SXM5 and H200:
 * 989; all without sparsity: the datasheets' headline H100/H200 figures, 1,671 and 1,979, are with it).
 */
export const GPU_FP16_PEAK_TFLOPS: { match: RegExp; tflops: number; source: string }[] = [
  { match: /\bT4\b/, tflops: 65, source: 'NVIDIA T4 datasheet: 65 TFLOPS mixed-precision FP16' },
  { match: /V100.*SXM2/, tflops: 125, source: 'NVIDIA V100 datasheet: 125 TFLOPS tensor (SXM2)' },
  { match: /V100/, tflops: 112, source: 'NVIDIA V100 datasheet: 112 TFLOPS tensor (PCIe)' },
  { match: /A100/, tflops: 312, source: 'NVIDIA A100 datasheet: 312 TFLOPS FP16 tensor (dense)' },
  {
    match: /H100.*94\s*GB|H100 NVL/,
    tflops: 835,
    source: 'NVIDIA H100 NVL datasheet: 835 TFLOPS FP16 tensor (dense; 1,671 with sparsity)',
  },
  { match: /H100/, tflops: 989, source: 'NVIDIA H100 SXM5 datasheet: 989 TFLOPS FP16 tensor (dense)' },
  { match: /H200/, tflops: 989, source: 'NVIDIA H200 SXM datasheet: 989 TFLOPS FP16 tensor (dense)' },
  // A whole A10 only: Azure's partial A10 sizes get a fraction of it, and no datasheet says which.
  {
    match: /\bA10\b(?!.*partial)/,
    tflops: 125,
    source: 'NVIDIA A10 datasheet: 125 TFLOPS FP16 tensor (dense)',
  },
];

/**
 * Share of the peak a ViT-B at batch 32 in fp16 through onnxruntime's CUDA provider (no TensorRT) is assumed
 * to reach: an assumption, not a measurement. `bench/gpu.sh` measures the real rate on a lent GPU.
 */
export const ASSUMED_GPU_UTILISATION = 0.3;

/** Multiply-adds of one forward pass, times two: the FLOPs of one image. */
export function dinov2Flops(config: Dinov2Config = DINOV2_BASE_CONFIG, imageSize = 224): number {
  const d = config.hidden_size;
  const tokens = (imageSize / config.patch_size) ** 2 + 1;
  const mlp = mlpHiddenSize(config);
  // QKV + output projection (4 d^2), MLP (2 d mlp) per token; scores and weighted sum (2 N^2 d) per layer.
  const perLayer = tokens * (4 * d * d + 2 * d * mlp) + 2 * tokens * tokens * d;
  const patchEmbed = (tokens - 1) * config.num_channels * config.patch_size ** 2 * d;
  return 2 * (config.num_hidden_layers * perLayer + patchEmbed);
}

export interface FeedEstimate {
  /** Images/s the vCPUs can feed: (vCPUs - 1, one left to the OS and the CUDA driver) x 1000 / CPU ms. */
  cpuFeedImagesPerSec: number;
  workerCpuMsPerImage: number;
  /** Images/s the GPUs are expected to embed; null without a GPU or a known datasheet figure. */
  gpuImagesPerSec: number | null;
  gpuSource: string | null;
  /** The smaller of the two: what the size can do. */
  bound: 'cpu' | 'gpu';
  imagesPerSec: number;
}

export function feedEstimate(
  vm: Pick<VmSize, 'vcpu' | 'gpuModel' | 'gpuCount'>,
  opts: { workerCpuMsPerImage?: number; utilisation?: number } = {},
): FeedEstimate {
  const ms = opts.workerCpuMsPerImage ?? MEASURED_WORKER_CPU.msPerImage;
  const cpuFeed = (Math.max(1, vm.vcpu - 1) * 1000) / ms;
  const peak = vm.gpuModel ? GPU_FP16_PEAK_TFLOPS.find((g) => g.match.test(vm.gpuModel!)) : undefined;
  const gpu =
    peak && vm.gpuCount > 0
      ? (vm.gpuCount * peak.tflops * 1e12 * (opts.utilisation ?? ASSUMED_GPU_UTILISATION)) / dinov2Flops()
      : null;
  const bound = gpu !== null && gpu < cpuFeed ? 'gpu' : 'cpu';
  return {
    cpuFeedImagesPerSec: Math.round(cpuFeed),
    workerCpuMsPerImage: ms,
    gpuImagesPerSec: gpu === null ? null : Math.round(gpu),
    gpuSource: peak
      ? `${peak.source} x ${opts.utilisation ?? ASSUMED_GPU_UTILISATION} assumed utilisation / ${(dinov2Flops() / 1e9).toFixed(1)} GFLOPs per image (DINOv2-B/14, 224 px)`
      : null,
    bound,
    imagesPerSec: Math.round(gpu === null ? cpuFeed : Math.min(gpu, cpuFeed)),
  };
}
