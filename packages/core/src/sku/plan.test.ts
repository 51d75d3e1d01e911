import { describe, expect, it } from 'vitest';
import { retiredOn } from './catalogue';
import { PlanDoesNotFitError } from './errors';
import { formatEnvFile, planForResources, planForSize, planToEnv } from './plan';
import type { VmSize } from './types';
import { VM_SIZES } from './vm-sizes';

describe('planForSize: every catalogue size', () => {
  for (const vm of VM_SIZES) {
    it(vm.size, () => {
      const plan = planForSize(vm.size);
      expect(plan.size).toBe(vm.size);
      expect(plan.memory.fits).toBe(true);
      expect(plan.memory.host.totalBytes).toBeLessThanOrEqual(plan.memory.host.budgetBytes);
      expect(plan.warnings.some((w) => w.includes('reduced'))).toBe(false);
      for (const n of [plan.intraOpThreads, plan.inferenceThreads, plan.decodeThreads, plan.batchSize]) {
        expect(Number.isSafeInteger(n) && n >= 1).toBe(true);
      }
      expect(plan.uvThreadpoolSize).toBeGreaterThanOrEqual(Math.max(4, plan.decodeThreads));
      expect(plan.workerConcurrency).toBeGreaterThanOrEqual(plan.batchSize * plan.inferenceThreads);
      if (vm.gpuCount > 0) {
        expect(plan.provider).toBe('cuda');
        expect(plan.modelVariant).toBe('fp16');
        expect(plan.processes.map((p) => p.cudaDeviceId)).toEqual(
          Array.from({ length: vm.gpuCount }, (_, i) => i),
        );
        expect(plan.memory.gpu).not.toBeNull();
        expect(plan.memory.gpu!.perDeviceBytes).toBeLessThanOrEqual(plan.memory.gpu!.budgetBytes);
        // Threads of all processes together stay within the VM's vCPUs.
        const perProcess = plan.decodeThreads + plan.intraOpThreads * plan.inferenceThreads;
        expect(perProcess * plan.processes.length).toBeLessThanOrEqual(vm.vcpu + plan.processes.length * 2);
      } else {
        expect(plan.provider).toBe('cpu');
        expect(plan.modelVariant).toBe('fp32');
        expect(plan.processes).toEqual([{ index: 0, cudaDeviceId: null, vcpus: vm.vcpu }]);
        expect(plan.memory.gpu).toBeNull();
        // Intra-op threads never oversubscribe the vCPUs, and on SMT sizes use one per physical core.
        expect(plan.intraOpThreads * plan.inferenceThreads).toBeLessThanOrEqual(vm.vcpu);
        expect(plan.intraOpThreads * plan.inferenceThreads).toBeLessThanOrEqual(plan.physicalCores);
        expect(plan.intraOpThreads).toBeLessThanOrEqual(16);
      }
      const retired = retiredOn(vm);
      if (retired) expect(plan.warnings.join('\n')).toContain(`retired (${retired})`);
      else expect(plan.warnings).toEqual([]);
    });
  }
});

describe('plan heuristics', () => {
  it('a 2-vCPU size fits its threads in 2 cores', () => {
    for (const name of ['Standard_DS2_v2', 'Standard_D2as_v4', 'Standard_E2s_v3']) {
      const plan = planForSize(name);
      expect(plan.decodeThreads).toBe(1);
      expect(plan.inferenceThreads).toBe(1);
      expect(plan.intraOpThreads).toBeGreaterThanOrEqual(1);
      expect(plan.intraOpThreads).toBeLessThanOrEqual(2);
      expect(plan.batchSize).toBeLessThanOrEqual(4);
    }
    // Whole cores (DSv2): inference takes both, the decode thread shares them.
    expect(planForSize('Standard_DS2_v2').intraOpThreads).toBe(2);
    // SMT siblings: one physical core, one intra-op thread, decoding on the sibling.
    expect(planForSize('Standard_D2as_v4').intraOpThreads).toBe(1);
  });

  it('splits big CPUs into sessions of at most 16 threads, leaving siblings to decoding', () => {
    const plan = planForSize('Standard_D96as_v4');
    expect(plan.physicalCores).toBe(48);
    expect(plan.inferenceThreads).toBe(3);
    expect(plan.intraOpThreads).toBe(16);
    expect(plan.decodeThreads).toBe(12);
  });

  it('gives a multi-GPU size one pinned process per GPU with its share of the vCPUs', () => {
    const plan = planForSize('Standard_ND96asr_v4');
    expect(plan.processes).toHaveLength(8);
    expect(plan.processes.every((p) => p.vcpus === 12)).toBe(true);
    expect(plan.decodeThreads).toBe(11);
    expect(plan.batchSize).toBe(64);
    expect(planForSize('Standard_NC4as_T4_v3').batchSize).toBe(32);
  });

  it('can be forced onto the CPU of a GPU size', () => {
    const plan = planForSize('Standard_NC4as_T4_v3', { provider: 'cpu' });
    expect(plan.provider).toBe('cpu');
    expect(plan.modelVariant).toBe('fp32');
    expect(plan.processes).toHaveLength(1);
  });

  it('honours overrides and plans local resources the same way', () => {
    const plan = planForResources({ vcpus: 2, memoryGib: 8, gpus: [], smt: false }, { intraOpThreads: 1 });
    expect(plan.intraOpThreads).toBe(1);
    expect(plan.inferenceThreads).toBe(2);
    expect(planForResources({ vcpus: 4, memoryGib: 16, gpus: [{ memoryGib: 16 }] }).provider).toBe('cuda');
    expect(() => planForResources({ vcpus: 0, memoryGib: 8, gpus: [] })).toThrow(/vcpus/);
    expect(() => planForResources({ vcpus: 2, memoryGib: 8, gpus: [] }, { provider: 'cuda' })).toThrow(/GPU/);
    expect(() => planForSize('Standard_DS2_v2', { batchSize: 0 })).toThrow(/batchSize/);
  });
});

describe('memory check', () => {
  const tiny: VmSize = {
    size: 'Hypothetical_Tiny',
    vcpu: 2,
    memoryGib: 0.5,
    gpuModel: null,
    gpuCount: 0,
    gpuMemoryGib: null,
    cpu: 'test',
    avx512: 'no',
    note: null,
  };

  it('rejects a size whose RAM cannot hold even one session', () => {
    expect(() => planForSize(tiny)).toThrow(PlanDoesNotFitError);
    try {
      planForSize(tiny);
    } catch (err) {
      const e = err as PlanDoesNotFitError;
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.resource).toBe('host');
      expect(e.requiredBytes).toBeGreaterThan(e.budgetBytes);
      expect(e.message).toMatch(/does not fit Hypothetical_Tiny/);
    }
  });

  it('rejects a batch the caller asked for that does not fit RAM', () => {
    const err = (() => {
      try {
        planForSize('Standard_DS2_v2', { batchSize: 512 });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(PlanDoesNotFitError);
    expect((err as PlanDoesNotFitError).resource).toBe('host');
  });

  it('rejects a batch that does not fit GPU memory', () => {
    const err = (() => {
      try {
        planForSize('Standard_NC4as_T4_v3', { batchSize: 1024 });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(PlanDoesNotFitError);
    expect((err as PlanDoesNotFitError).resource).toBe('gpu');
  });

  it('shrinks a batch it chose itself, with a warning', () => {
    const plan = planForSize({ ...tiny, memoryGib: 1.6, vcpu: 16 });
    expect(plan.batchSize).toBeLessThan(8);
    expect(plan.warnings.join('\n')).toMatch(/batch reduced from 8/);
    expect(plan.memory.fits).toBe(true);
  });

  it('documents its arithmetic in the breakdown', () => {
    const { host } = planForSize('Standard_D4as_v4').memory;
    expect(host.perProcessBytes).toBe(
      host.baselineBytes +
        host.runtimeBytes +
        host.sessionsBytes +
        host.activationsBytes +
        host.batchBuffersBytes +
        host.decodeBytes +
        host.prefetchBytes,
    );
  });
});

describe('planToEnv', () => {
  it('gives each GPU process its own CUDA_DEVICE_ID', () => {
    const envs = planToEnv(planForSize('Standard_NC24s_v3'));
    expect(envs.map((e) => e.CUDA_DEVICE_ID)).toEqual(['0', '1', '2', '3']);
    expect(envs[0]).toMatchObject({
      EXECUTION_PROVIDER: 'cuda',
      INTRA_OP_THREADS: '1',
      INFERENCE_THREADS: '2',
      MAX_BATCH_SIZE: '32',
    });
  });

  it('sets every worker variable on CPU, without a device id', () => {
    const [env, ...rest] = planToEnv(planForSize('Standard_D8as_v4'));
    expect(rest).toEqual([]);
    expect(Object.keys(env!).sort()).toEqual(
      [
        'BATCH_WAIT_MS',
        'DECODE_CONCURRENCY',
        'EXECUTION_PROVIDER',
        'INFERENCE_THREADS',
        'INTRA_OP_THREADS',
        'MAX_BATCH_SIZE',
        'UV_THREADPOOL_SIZE',
        'WORKER_CONCURRENCY',
      ].sort(),
    );
    expect(env).toMatchObject({ EXECUTION_PROVIDER: 'cpu', INTRA_OP_THREADS: '4', DECODE_CONCURRENCY: '1' });
    expect(formatEnvFile(env!, ['plan for Standard_D8as_v4'])).toMatch(
      /^# plan for Standard_D8as_v4\nEXECUTION_PROVIDER=cpu\nINTRA_OP_THREADS=4\n/,
    );
  });
});
