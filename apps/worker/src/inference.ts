import type { MicroBatcher } from '@embedpool/core/batching';
import type { Config } from '@embedpool/core/config';
import { Engine } from '@embedpool/core/engine';
import type { Logger } from '@embedpool/core/logger';
import { type ModelPrecision, readModelPrecision } from '@embedpool/core/precision';
import type { WorkerMetrics } from './metrics';
import type { ModelSource } from './model-source';
import { createInferenceBatcher } from './stages/infer';

export interface Inference {
  engine: Engine;
  batcher: MicroBatcher;
  /** What the model computes in, from its metadata or its graph (int8 after `embedpool model quantize`). */
  precision: ModelPrecision | 'unknown';
  /** The model's input size (its graph's, else the preprocessor's crop, else 224). */
  height: number;
  width: number;
}

/**
 * Loads the model into onnxruntime and puts the infer stage's micro-batcher (stages/infer.ts) in front of it,
 * both reporting to `metrics`.
 */
export async function loadInference(
  config: Config,
  model: ModelSource,
  metrics: WorkerMetrics,
  logger: Logger,
): Promise<Inference> {
  const engine = await Engine.load({
    modelPath: model.path,
    threads: config.INFERENCE_THREADS,
    logger,
    runtime: {
      executionProvider: config.EXECUTION_PROVIDER,
      cudaDeviceId: config.CUDA_DEVICE_ID,
      intraOpThreads: config.INTRA_OP_THREADS,
      interOpThreads: config.INTER_OP_THREADS,
      graphOptimization: config.GRAPH_OPTIMIZATION,
      spinning: config.ORT_SPINNING,
    },
  });
  const precision = await readPrecision(model, logger);
  const crop = model.preprocessor.crop_size;
  const height = engine.info.height ?? crop?.height ?? 224;
  const width = engine.info.width ?? crop?.width ?? 224;
  const batcher = createInferenceBatcher(
    engine,
    { maxBatchSize: config.MAX_BATCH_SIZE, batchWaitMs: config.BATCH_WAIT_MS, height, width },
    metrics,
  );
  metrics.modelInfo.set(
    {
      // Both labels carry the model's id (not its file name: every export is `model.onnx`).
      model: model.modelId,
      model_id: model.modelId,
      provider: engine.provider,
      dim: String(engine.dim ?? 0),
      random_weights: String(model.randomWeights),
      precision,
    },
    1,
  );
  return { engine, batcher, precision, height, width };
}

/** Read from the file without loading its weights again; a model ORT loaded but we cannot parse is 'unknown'. */
async function readPrecision(model: ModelSource, logger: Logger): Promise<ModelPrecision | 'unknown'> {
  const info = await readModelPrecision(model.path).catch((err: unknown) => {
    logger.warn({ err, model: model.path }, 'could not read the model precision');
    return undefined;
  });
  if (info?.precision === 'int8') {
    logger.info(
      {
        method: info.metadata['embedpool.quantization.method'],
        minCosine: info.metadata['embedpool.quantization.min_cosine'],
        source: info.metadata['embedpool.source.id'],
      },
      'int8 model',
    );
  }
  return info?.precision ?? 'unknown';
}
