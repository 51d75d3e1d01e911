export {
  type BuildDinov2Options,
  buildDinov2,
  buildDinov2Onnx,
  DEFAULT_IMAGE_SIZE,
  DINOV2_OPSET,
  type Dinov2Build,
  writeDinov2Onnx,
} from './build-dinov2';
export {
  DINOV2_BASE_CONFIG,
  DINOV2_BASE_REG_CONFIG,
  DINOV2_GIANT_CONFIG,
  DINOV2_GIANT_REG_CONFIG,
  DINOV2_LARGE_CONFIG,
  DINOV2_LARGE_REG_CONFIG,
  DINOV2_PRESETS,
  DINOV2_SMALL_CONFIG,
  DINOV2_SMALL_REG_CONFIG,
  type Dinov2Config,
  type Dinov2ConfigInput,
  dinov2ConfigSchema,
  loadDinov2Config,
  mlpHiddenSize,
  parseDinov2Config,
  usesRegisterInterpolation,
} from './dinov2-config';
export type { WeightDtype } from './dinov2-graph';
export { dinov2ParameterShapes } from './dinov2-params';
export { bfloat16ToFloat32, float16ToFloat32, float32ToFloat16 } from './half';
export {
  antialiasBicubicResizeHwc,
  type BicubicOptions,
  bicubicResizeHwc,
  interpolatePosEmbed,
} from './pos-embed';
export { randomDinov2Weights } from './random-weights';
export {
  parseSafetensors,
  parseSafetensorsHeader,
  readSafetensors,
  type SafetensorsDtype,
  type SafetensorsEntry,
  type SafetensorsHeader,
} from './safetensors';
export type { WeightMap, WeightTensor } from './weights';
