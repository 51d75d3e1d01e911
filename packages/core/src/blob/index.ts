export { blobAuthFromConfig, blobRetryFromConfig } from './auth-from-config';
export {
  type BlobAuth,
  type BlobClientOptions,
  type BlobCredentialKind,
  type BlobRetryOptions,
  type BlobTarget,
  blobAuthSchema,
  blobPipelineOptions,
  blobRetrySchema,
  createBlobServiceClient,
  DEFAULT_BLOB_RETRY,
  isValidContainerName,
  parseBlobAuth,
  redactUrl,
  resolveBlobTarget,
} from './blob-client';
export {
  DEFAULT_SINK_RETRY,
  type JobBlobKind,
  type JobBlobNames,
  type JobVectorFormats,
  type JobVectorItem,
  type JobVectorsManifest,
  jobBlobNames,
  type SinkRetryOptions,
  type UploadTuning,
  type WriteJobVectorsOptions,
  type WriteJobVectorsResult,
  type WrittenBlob,
  writeJobVectors,
} from './blob-sink';
export { encodeNpyFloat32, NPY_ALIGNMENT, NPY_MAGIC, npyHeader } from './npy';
export {
  expandPathTemplate,
  formatUtcDate,
  MAX_BLOB_NAME_LENGTH,
  PATH_PLACEHOLDERS,
  type ParsedPathTemplate,
  type PathPlaceholder,
  PathTemplateError,
  type PathTemplateErrorReason,
  type PathTemplateRules,
  type PathVars,
  parsePathTemplate,
} from './path-template';
export { BlobStaging } from './staging';
export {
  isTransientStorageError,
  type StorageErrorContext,
  storageErrorCode,
  storageStatus,
  toStorageError,
} from './storage-errors';
