// The precision reader alone: `@embedpool/core/quantize` loads onnxruntime-node, which a worker's main
// thread never does (inference runs in its own threads); reading a model's precision needs none of it.
export {
  type ModelPrecision,
  type ModelPrecisionInfo,
  readModelPrecision,
} from '../quantize/model-precision';
