/**
 * What "the model" is, pinned to exact commits so a cache entry never changes under a name and every
 * downloaded byte can be checked against the hub's LFS sha256.
 */

export type ModelSource = 'xenova-onnx' | 'facebook-safetensors';
export type ModelVariant = 'fp32' | 'fp16';

/** Logical names of fetched files; `fetchModel` returns a local path for each. */
export type ModelFileName = 'model' | 'weights' | 'config' | 'preprocessorConfig';

export interface ManifestFile {
  name: ModelFileName;
  /** Path inside the repository at `revision`. */
  path: string;
  /** Pinned LFS sha256 (lowercase hex); when set it wins over what the server advertises. */
  sha256?: string;
}

export interface ModelManifest {
  source: ModelSource;
  repo: string;
  /** A 40-hex commit, never a branch: the cache layout and hash pins assume immutable content. */
  revision: string;
  files: ManifestFile[];
}

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';

export const DEFAULT_MODEL_SOURCE: ModelSource = 'xenova-onnx';
export const DEFAULT_MODEL_VARIANT: ModelVariant = 'fp32';

/** ONNX export of DINOv2-base (fp32 for CPU, fp16 for GPU; both keep float32 inputs and outputs). */
export const DEFAULT_MODEL_REPO = 'Xenova/dinov2-base';
export const DEFAULT_MODEL_REVISION = 'fef96735014749b0e195358c3fc42cc00b08378e';

/**
 * The original checkpoint, for callers that build their own ONNX file. The commit is the one public
 * projects pin for this repository; it was not checked against the hub from here.
 */
export const FACEBOOK_MODEL_REPO = 'facebook/dinov2-base';
export const FACEBOOK_MODEL_REVISION = 'f9e44c814b77203eaa57a6bdbbd535f21ede1415';

export const ONNX_VARIANT_PATHS: Record<ModelVariant, string> = {
  fp32: 'onnx/model.onnx',
  fp16: 'onnx/model_fp16.onnx',
};

/**
 * Known sha256 values by `<repo>@<revision>:<path>`. Empty until someone records them from the hub's
 * blob pages; until then the `X-Linked-Etag` the hub sends is what downloads are checked against.
 */
export const PINNED_SHA256: Readonly<Record<string, string>> = {};

export function pinKey(repo: string, revision: string, path: string): string {
  return `${repo}@${revision}:${path}`;
}

export interface ManifestOptions {
  source?: ModelSource;
  variant?: ModelVariant;
  /** Overrides for mirrors or forks; the revision must still be a full commit. */
  repo?: string;
  revision?: string;
  /** sha256 by repository path; overrides `PINNED_SHA256`. */
  pins?: Record<string, string>;
}

export function modelManifest(options: ManifestOptions = {}): ModelManifest {
  const source = options.source ?? DEFAULT_MODEL_SOURCE;
  const xenova = source === 'xenova-onnx';
  const repo = options.repo ?? (xenova ? DEFAULT_MODEL_REPO : FACEBOOK_MODEL_REPO);
  const revision = options.revision ?? (xenova ? DEFAULT_MODEL_REVISION : FACEBOOK_MODEL_REVISION);
  const files: Omit<ManifestFile, 'sha256'>[] = xenova
    ? [{ name: 'model', path: ONNX_VARIANT_PATHS[options.variant ?? DEFAULT_MODEL_VARIANT] }]
    : [{ name: 'weights', path: 'model.safetensors' }];
  files.push(
    { name: 'config', path: 'config.json' },
    { name: 'preprocessorConfig', path: 'preprocessor_config.json' },
  );
  return {
    source,
    repo,
    revision,
    files: files.map((file) => {
      const sha256 = options.pins?.[file.path] ?? PINNED_SHA256[pinKey(repo, revision, file.path)];
      return sha256 === undefined ? file : { ...file, sha256: sha256.toLowerCase() };
    }),
  };
}
