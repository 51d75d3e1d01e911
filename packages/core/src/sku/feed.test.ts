import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DINOV2_BASE_CONFIG, parseDinov2Config } from '../model';
import { getVmSize } from './catalogue';
import { dinov2Flops, feedEstimate, MEASURED_WORKER_CPU } from './feed';

describe('feed estimate', () => {
  it('counts DINOv2-B/14 at 224 px as ~46 GFLOPs, growing with depth and tokens', () => {
    const base = dinov2Flops(DINOV2_BASE_CONFIG, 224);
    expect(base / 1e9).toBeGreaterThan(45);
    expect(base / 1e9).toBeLessThan(48);
    const deeper = dinov2Flops(parseDinov2Config({ num_hidden_layers: 24 }), 224);
    expect(deeper).toBeGreaterThan(1.9 * base);
    expect(dinov2Flops(DINOV2_BASE_CONFIG, 448)).toBeGreaterThan(4 * base);
  });

  it('names the CPU as the bound where the vCPUs cannot keep the GPU busy, and the GPU where they can', () => {
    const t4 = feedEstimate(getVmSize('Standard_NC4as_T4_v3'));
    expect(t4.cpuFeedImagesPerSec).toBe(Math.round((3 * 1000) / MEASURED_WORKER_CPU.msPerImage));
    expect(t4.gpuImagesPerSec).toBeGreaterThan(t4.cpuFeedImagesPerSec);
    expect(t4.bound).toBe('cpu');
    expect(t4.imagesPerSec).toBe(t4.cpuFeedImagesPerSec);
    expect(t4.gpuSource).toMatch(/T4 datasheet/);

    const cheap = feedEstimate(getVmSize('Standard_NC4as_T4_v3'), { workerCpuMsPerImage: 1 });
    expect(cheap.bound).toBe('gpu');
    expect(cheap.imagesPerSec).toBe(cheap.gpuImagesPerSec);
  });

  it('has no GPU rate for a CPU size', () => {
    const cpu = feedEstimate(getVmSize('Standard_D4as_v4'));
    expect(cpu.gpuImagesPerSec).toBeNull();
    expect(cpu.bound).toBe('cpu');
  });

  it('takes its CPU cost per image from the committed pipeline bench result it names', () => {
    const file = new URL(`../../../../${MEASURED_WORKER_CPU.resultFile}`, import.meta.url);
    const run = JSON.parse(readFileSync(file, 'utf8')) as {
      pipeline: {
        decode: { cpuMsPerImage: number };
        phases: { name: string; cpuMsPerImage: { worker: number } }[];
      };
    };
    const worker = run.pipeline.phases
      .filter((p) => !p.name.startsWith('idle'))
      .map((p) => p.cpuMsPerImage.worker)
      .sort((a, b) => a - b);
    expect(worker).toHaveLength(5);
    expect(MEASURED_WORKER_CPU.msPerImage).toBe(worker[2]);
    expect(MEASURED_WORKER_CPU.decodeAloneMs).toBe(run.pipeline.decode.cpuMsPerImage);
  });

  it('knows the H100 sizes: a GPU rate from the datasheet beside the CPU feed, and which bounds', () => {
    const h100 = feedEstimate(getVmSize('Standard_NC40ads_H100_v5'));
    expect(h100.gpuSource).toMatch(/H100 NVL datasheet: 835/);
    expect(h100.cpuFeedImagesPerSec).toBe(Math.round((39 * 1000) / MEASURED_WORKER_CPU.msPerImage));
    expect(h100.imagesPerSec).toBe(Math.min(h100.cpuFeedImagesPerSec, h100.gpuImagesPerSec!));
    expect(feedEstimate(getVmSize('Standard_ND96isr_H100_v5')).gpuSource).toMatch(/H100 SXM5 datasheet: 989/);
  });
});
