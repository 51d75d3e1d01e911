/**
 * The decode stage: encoded bytes to the model's pixels (decode, orient, resize, crop: core/preprocess,
 * on the libuv pool). Normalization happens later, straight into the batch tensor, so no per-image float
 * array is allocated and copied.
 */
import { type DecodedForModel, decodeForModel, type PreprocessOptions } from '@embedpool/core/preprocess';
import { inSpan } from '@embedpool/core/telemetry';
import pLimit, { type LimitFunction } from 'p-limit';
import type { WorkerMetrics } from '../metrics';

export interface DecodeStageOptions {
  preprocess: PreprocessOptions;
  /** Decodes at once: bounds memory (a decoded photo is megabytes) and leaves cores for inference. */
  concurrency: number;
  metrics?: WorkerMetrics;
}

export class DecodeStage {
  private readonly limit: LimitFunction;

  constructor(private readonly opts: DecodeStageOptions) {
    this.limit = pLimit(opts.concurrency);
  }

  /** One image, waiting for a free decode slot first (`decode` span; `decode` stage metric). */
  async decode(bytes: Uint8Array): Promise<DecodedForModel> {
    const started = performance.now();
    const pixels = await inSpan('decode', { 'embedpool.image.bytes': bytes.byteLength }, () =>
      this.limit(() => decodeForModel(bytes, this.opts.preprocess)),
    );
    this.opts.metrics?.stage.observe({ stage: 'decode' }, (performance.now() - started) / 1000);
    return pixels;
  }
}
