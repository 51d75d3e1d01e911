export { type ChannelStats, collectActivationStats } from './activation-stats';
export { type Agreement, agreement, compareSessions, type ImageAgreement } from './compare';
export { embedAll, openSession, sessionInputSize } from './embed-session';
export {
  DEFAULT_CALIBRATION_DIR,
  DEFAULT_HOLDOUT_DIR,
  type LoadedImage,
  listImages,
  loadImageDir,
} from './images';
export { type ModelPrecision, type ModelPrecisionInfo, readModelPrecision } from './model-precision';
export {
  META,
  type QuantizeMethod,
  type QuantizeOptions,
  type QuantizeResult,
  quantizeModel,
} from './quantize-model';
export { quantizeColumns, smoothingScales } from './rewrite';
