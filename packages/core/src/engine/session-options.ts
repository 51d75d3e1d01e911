import type { InferenceSession } from 'onnxruntime-node';

export type ExecutionProvider = 'cpu' | 'cuda';
export type GraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'all';

export interface RuntimeOptions {
  executionProvider: ExecutionProvider;
  cudaDeviceId: number;
  /** 0 lets onnxruntime pick (one per physical core). */
  intraOpThreads: number;
  interOpThreads: number;
  graphOptimization: GraphOptimizationLevel;
  /**
   * Whether idle intra-op threads spin waiting for the next parallel section. `auto`: on for the CPU
   * provider (the model is the work, and spinning shortens its runs), off for CUDA, where the threads have
   * next to nothing to run and spinning only takes CPU from decoding.
   */
  spinning?: 'auto' | 'on' | 'off';
}

export const DEFAULT_RUNTIME_OPTIONS: RuntimeOptions = {
  executionProvider: 'cpu',
  cudaDeviceId: 0,
  intraOpThreads: 0,
  interOpThreads: 1,
  graphOptimization: 'all',
  spinning: 'auto',
};

/** Whether intra-op threads spin under these options (see RuntimeOptions.spinning). */
export function spinningOn(opts: RuntimeOptions, provider: ExecutionProvider): boolean {
  const s = opts.spinning ?? 'auto';
  return s === 'auto' ? provider === 'cpu' : s === 'on';
}

export function sessionOptions(
  opts: RuntimeOptions,
  provider: ExecutionProvider = opts.executionProvider,
): InferenceSession.SessionOptions {
  return {
    executionProviders: provider === 'cuda' ? [{ name: 'cuda', deviceId: opts.cudaDeviceId }] : ['cpu'],
    graphOptimizationLevel: opts.graphOptimization,
    ...(opts.intraOpThreads > 0 ? { intraOpNumThreads: opts.intraOpThreads } : {}),
    ...(opts.interOpThreads > 0 ? { interOpNumThreads: opts.interOpThreads } : {}),
    executionMode: 'sequential',
    logSeverityLevel: 3,
    ...(spinningOn(opts, provider) ? {} : { extra: { session: { intra_op: { allow_spinning: '0' } } } }),
  };
}
