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
}

export const DEFAULT_RUNTIME_OPTIONS: RuntimeOptions = {
  executionProvider: 'cpu',
  cudaDeviceId: 0,
  intraOpThreads: 0,
  interOpThreads: 1,
  graphOptimization: 'all',
};

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
  };
}
