export {
  type DecodedRegion,
  type DecodePath,
  decodeRegion,
  probeImage,
  type SourceInfo,
  toImageError,
} from './decode';
export { type DecodedForModel, decodeForModel } from './deferred';
export { IMAGE_EXTENSIONS } from './formats';
export {
  centerCropRegion,
  fixedOutputSize,
  type Geometry,
  planGeometry,
  type Region,
  resizeOutputSize,
  type Size,
} from './geometry';
export {
  DEFAULT_ALLOWED_FORMATS,
  DEFAULT_PREPROCESS_LIMITS,
  type FailOn,
  type ImageFormat,
  type PreprocessOptions,
  type ResolvedPreprocessOptions,
  resolvePreprocessOptions,
  sharpCanDecode,
} from './limits';
export { hwcToChwInto, type NormalizeTable, normalizeTable } from './normalize';
export { outputFloats, type PreprocessInfo, preprocess, preprocessInto } from './preprocess';
export {
  DINOV2_PREPROCESSOR_CONFIG,
  loadPreprocessorConfig,
  type PreprocessorConfig,
  type PreprocessorConfigInput,
  parsePreprocessorConfig,
  preprocessorConfigSchema,
  RESAMPLE_NAMES,
  type Resample,
  type ResizeSize,
} from './preprocessor-config';
export { resampleRegion } from './resample';
