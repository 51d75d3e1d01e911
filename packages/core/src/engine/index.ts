export { Engine, type EngineOptions, type EngineStats, type InferResult } from './engine';
export { type ModelInfo, readModelInfo, type TensorElementType } from './model-info';
export {
  DEFAULT_RUNTIME_OPTIONS,
  type ExecutionProvider,
  type GraphOptimizationLevel,
  type RuntimeOptions,
  sessionOptions,
} from './session-options';
