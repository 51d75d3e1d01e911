import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '@embedpool/core/config';
import { EmbedpoolError } from '@embedpool/core/errors';
import type { Logger } from '@embedpool/core/logger';
import { DINOV2_BASE_CONFIG, writeDinov2Onnx } from '@embedpool/core/model';
import { defaultCacheDir, fetchModel, findCachedModel, hubCacheDir } from '@embedpool/core/model-fetch';
import { fetchedModelId, randomModelId, resolveModelId } from '@embedpool/core/model-identity';
import {
  DINOV2_PREPROCESSOR_CONFIG,
  loadPreprocessorConfig,
  type PreprocessorConfig,
} from '@embedpool/core/preprocess';

export interface ModelSource {
  path: string;
  /** A stable label for logs, metrics and outputs (repo@revision, file name, or the random stand-in). */
  modelId: string;
  randomWeights: boolean;
  preprocessor: PreprocessorConfig;
  /** Numeric precision of the weights when the source says (a fetched fp16 variant keeps float32 I/O). */
  precision?: string;
}

const RANDOM_SEED = 0;

/**
 * Where the worker's model comes from, in order: MODEL_PATH; a model fetched earlier into the cache;
 * a fetch now (MODEL_FETCH); and, outside production only, a full-size random-weight ViT-B/14 built
 * locally so the pipeline can run offline. Production never falls back: a missing model stops the boot.
 */
export async function resolveModel(config: Config, logger: Logger): Promise<ModelSource> {
  const explicitPre = config.PREPROCESSOR_CONFIG
    ? await loadPreprocessorConfig(config.PREPROCESSOR_CONFIG)
    : undefined;
  if (config.MODEL_PATH) {
    if (!existsSync(config.MODEL_PATH)) {
      throw new EmbedpoolError('MODEL_NOT_FOUND', `MODEL_PATH ${config.MODEL_PATH} does not exist`);
    }
    const sibling = join(dirname(config.MODEL_PATH), 'preprocessor_config.json');
    const preprocessor =
      explicitPre ??
      (existsSync(sibling) ? await loadPreprocessorConfig(sibling) : DINOV2_PREPROCESSOR_CONFIG);
    const identity = await resolveModelId({
      modelPath: config.MODEL_PATH,
      envId: config.MODEL_ID,
      production: config.NODE_ENV === 'production',
    });
    if (identity.warning) logger.warn({ modelId: identity.id }, identity.warning);
    return {
      path: config.MODEL_PATH,
      modelId: identity.id,
      randomWeights: false,
      preprocessor,
    };
  }

  const cacheDir = config.EMBEDPOOL_CACHE_DIR ?? defaultCacheDir();
  const variant = config.EXECUTION_PROVIDER === 'cuda' ? 'fp16' : 'fp32';
  const hubCache = config.HF_HUB_CACHE ?? hubCacheDir(config.HF_HOME ? { HF_HOME: config.HF_HOME } : {});
  let fetched = await findCachedModel({ cacheDir, variant, hubCacheDir: hubCache });
  if (!fetched && config.MODEL_FETCH && !config.HF_HUB_OFFLINE) {
    try {
      fetched = await fetchModel({
        cacheDir,
        variant,
        hubCacheDir: hubCache,
        offline: false,
        logger,
        ...(config.HF_ENDPOINT ? { endpoint: config.HF_ENDPOINT } : {}),
        ...(config.HF_TOKEN ? { token: config.HF_TOKEN } : {}),
      });
    } catch (err) {
      if (config.NODE_ENV === 'production') throw err;
      logger.warn({ err }, 'could not fetch the model');
    }
  }
  if (fetched?.modelPath) {
    return {
      path: fetched.modelPath,
      modelId: config.MODEL_ID ?? fetchedModelId(fetched.repo, fetched.revision, variant),
      randomWeights: false,
      precision: variant,
      preprocessor: explicitPre ?? (await loadPreprocessorConfig(fetched.preprocessorConfigPath)),
    };
  }
  if (config.NODE_ENV === 'production') {
    throw new EmbedpoolError(
      'MODEL_NOT_FOUND',
      'no model: set MODEL_PATH or run `embedpool model fetch` (production never serves random weights)',
    );
  }
  return randomModel(cacheDir, explicitPre, logger);
}

async function randomModel(
  cacheDir: string,
  preprocessor: PreprocessorConfig | undefined,
  logger: Logger,
): Promise<ModelSource> {
  const path = join(cacheDir, 'random', `dinov2-base-random-seed${RANDOM_SEED}.onnx`);
  if (!existsSync(path)) {
    logger.warn({ path }, 'building a random-weight DINOv2 ViT-B/14 (no real model available)');
    await writeDinov2Onnx({ config: DINOV2_BASE_CONFIG, seed: RANDOM_SEED, out: path });
  }
  logger.warn(
    { path },
    'SERVING RANDOM WEIGHTS: the pipeline runs but the vectors mean nothing. Set MODEL_PATH or run `embedpool model fetch`.',
  );
  return {
    path,
    modelId: randomModelId('dinov2-base', RANDOM_SEED),
    randomWeights: true,
    preprocessor: preprocessor ?? DINOV2_PREPROCESSOR_CONFIG,
  };
}
