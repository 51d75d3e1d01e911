import type { MicroBatcher } from '@embedpool/core/batching';
import { toEmbedpoolError } from '@embedpool/core/errors';
import type { UrlPolicy } from '@embedpool/core/net';
import type { DecodedForModel, PreprocessOptions } from '@embedpool/core/preprocess';
import type { ImageRef, InlineReader, LoadedImage } from '@embedpool/core/queue';
import type { WorkerMetrics } from './metrics';
import { joinBatch } from './stages/batch';
import { DecodeStage } from './stages/decode';
import { fetchImage } from './stages/fetch';

export interface EmbedPipelineOptions {
  /** The worker's micro-batcher over its engine (stages/infer.ts). */
  batcher: MicroBatcher;
  policy: UrlPolicy;
  preprocess: PreprocessOptions;
  maxImageBytes: number;
  /** Decodes at once: bounds memory (a decoded photo is megabytes) and leaves cores for inference. */
  decodeConcurrency: number;
  metrics?: WorkerMetrics;
}

/**
 * One image from reference to vector, through the worker's stages in order: fetch (stages/fetch.ts),
 * decode (stages/decode.ts), batch (stages/batch.ts) and infer (stages/infer.ts). Decoding of later
 * images overlaps the model run of earlier ones. Where the vector goes next is the deliver stage
 * (stages/deliver.ts), chosen by the caller.
 */
export class EmbedPipeline {
  private readonly decoder: DecodeStage;

  constructor(private readonly opts: EmbedPipelineOptions) {
    this.decoder = new DecodeStage({
      preprocess: opts.preprocess,
      concurrency: opts.decodeConcurrency,
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
    });
  }

  /** `inline`: the reader of the job's inline bytes, for `{kind: 'inline'}` refs. */
  async embed(
    ref: ImageRef | LoadedImage,
    signal?: AbortSignal,
    inline?: InlineReader,
  ): Promise<Float32Array> {
    const { batcher, metrics } = this.opts;
    // From here until it is queued, the batcher may wait a little for this image rather than run without it.
    const arriving = batcher.expect();
    let pixels: DecodedForModel;
    try {
      const bytes = await fetchImage(
        ref,
        {
          policy: this.opts.policy,
          maxBytes: this.opts.maxImageBytes,
          ...(signal ? { signal } : {}),
          ...(inline ? { inline } : {}),
        },
        metrics,
      );
      pixels = await this.decoder.decode(bytes);
    } catch (err) {
      arriving();
      const e = toEmbedpoolError(err);
      metrics?.images.inc({ status: 'failed', reason: e.code });
      throw e;
    }
    const vector = await joinBatch(batcher, pixels, arriving);
    metrics?.images.inc({ status: 'ok', reason: '' });
    return vector;
  }
}
