export {
  assertModelRef,
  cachedFilePath,
  defaultCacheDir,
  modelCacheDir,
  partialPath,
} from './cache-paths';
export {
  DEFAULT_RETRIES,
  type DownloadFileOptions,
  type DownloadResult,
  downloadFile,
} from './download-file';
export { type FetchModelOptions, fetchModel, hubFileUrl } from './fetch-model';
export type { FetchedModel } from './fetched-model';
export { type FindCachedModelOptions, findCachedModel, requireCachedModel } from './find-cached-model';
export { normalizeSha256, sha256File, sha256FromEtag } from './hash';
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  type Timeouts,
} from './http';
export {
  findInHubCache,
  hubCacheDir,
  hubOffline,
  hubRepoDir,
  isCommit,
  type ResolveRevisionOptions,
  readHubRef,
  resolveRevision,
} from './hub-cache';
export {
  DEFAULT_HF_ENDPOINT,
  DEFAULT_MODEL_REPO,
  DEFAULT_MODEL_REVISION,
  DEFAULT_MODEL_SOURCE,
  DEFAULT_MODEL_VARIANT,
  FACEBOOK_MODEL_REPO,
  FACEBOOK_MODEL_REVISION,
  type ManifestFile,
  type ManifestOptions,
  type ModelFileName,
  type ModelManifest,
  type ModelSource,
  type ModelVariant,
  modelManifest,
  ONNX_VARIANT_PATHS,
  PINNED_SHA256,
  pinKey,
} from './manifest';
export type { ProgressCallback, ProgressEvent, ProgressMode } from './progress';
export { RECORD_FILE } from './record';
