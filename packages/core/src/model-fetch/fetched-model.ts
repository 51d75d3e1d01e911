import type { ModelFileName, ModelManifest, ModelSource } from './manifest';

export interface FetchedModel {
  source: ModelSource;
  repo: string;
  revision: string;
  /** Snapshot directory: `<cacheDir>/<owner>--<name>/<commit>`. */
  dir: string;
  /** Local path by logical name (`model`, `weights`, `config`, `preprocessorConfig`). */
  files: Partial<Record<ModelFileName, string>>;
  /** The ONNX file (source `xenova-onnx`). */
  modelPath?: string;
  /** The safetensors checkpoint (source `facebook-safetensors`), for the ONNX builder. */
  weightsPath?: string;
  configPath: string;
  preprocessorConfigPath: string;
  /** True when every file came from the cache without a network request. */
  fromCache: boolean;
}

export function toFetchedModel(
  manifest: ModelManifest,
  dir: string,
  paths: Partial<Record<ModelFileName, string>>,
  fromCache: boolean,
): FetchedModel {
  const result: FetchedModel = {
    source: manifest.source,
    repo: manifest.repo,
    revision: manifest.revision,
    dir,
    files: paths,
    configPath: paths.config!,
    preprocessorConfigPath: paths.preprocessorConfig!,
    fromCache,
  };
  if (paths.model !== undefined) result.modelPath = paths.model;
  if (paths.weights !== undefined) result.weightsPath = paths.weights;
  return result;
}
