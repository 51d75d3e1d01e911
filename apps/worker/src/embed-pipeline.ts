import type { MicroBatcher } from '@embedpool/core/batching';
import { toEmbedpoolError } from '@embedpool/core/errors';
import type { UrlPolicy } from '@embedpool/core/net';
import { type DecodedForModel, decodeForModel, type PreprocessOptions } from '@embedpool/core/preprocess';
import type { ImageRef, InlineReader, LoadedImage } from '@embedpool/core/queue';
import { context, epochMs, inSpan, recordSpan } from '@embedpool/core/telemetry';
import pLimit, { type LimitFunction } from 'p-limit';
import { loadImageBytes } from './image-source';
import type { WorkerMetrics } from './metrics';

export interface EmbedPipelineOptions {
  batcher: MicroBatcher;
  policy: UrlPolicy;
  preprocess: PreprocessOptions;
  maxImageBytes: number;
  /** Decodes at once: bounds memory (a decoded photo is megabytes) and leaves cores for inference. */
  decodeConcurrency: number;
  metrics?: WorkerMetrics;
}

/**
 * One image from reference to vector: fetch or base64-decode, decode + preprocess on the libuv pool,
 * then into the micro-batcher. Decoding of later images overlaps the model run of earlier ones.
 */
export class EmbedPipeline {
  private readonly decodeLimit: LimitFunction;

  constructor(private readonly opts: EmbedPipelineOptions) {
    this.decodeLimit = pLimit(opts.decodeConcurrency);
  }

  /** `inline`: the reader of the job's inline bytes, for `{kind: 'inline'}` refs. */
  async embed(
    ref: ImageRef | LoadedImage,
    signal?: AbortSignal,
    inline?: InlineReader,
  ): Promise<Float32Array> {
    const { batcher, metrics } = this.opts;
    const arriving = batcher.expect();
    let pixels: DecodedForModel;
    try {
      const t0 = performance.now();
      const bytes = await inSpan('fetch', { 'embedpool.image.kind': ref.kind }, () =>
        loadImageBytes(ref, {
          policy: this.opts.policy,
          maxBytes: this.opts.maxImageBytes,
          ...(signal ? { signal } : {}),
          ...(inline ? { inline } : {}),
        }),
      );
      const t1 = performance.now();
      if (ref.kind === 'url') metrics?.stage.observe({ stage: 'fetch' }, (t1 - t0) / 1000);
      // Normalized later, straight into the batch tensor: no per-image float array to allocate and copy.
      pixels = await inSpan('decode', { 'embedpool.image.bytes': bytes.byteLength }, () =>
        this.decodeLimit(() => decodeForModel(bytes, this.opts.preprocess)),
      );
      metrics?.stage.observe({ stage: 'decode' }, (performance.now() - t1) / 1000);
    } catch (err) {
      arriving();
      const e = toEmbedpoolError(err);
      metrics?.images.inc({ status: 'failed', reason: e.code });
      throw e;
    }
    // The batch is shared by images of many jobs: its wait and its model run are recorded as spans of
    // this image's trace after the fact, from the times the batcher reports.
    const parent = context.active();
    const queuedAt = performance.now();
    let ran: { at: number; size: number } | undefined;
    // Queue first, then stop expecting it: the other order could send a batch a moment too early.
    const queued = batcher.embed({
      fill: (out, offset) => pixels.writeInto(out, offset),
      dispatched: (at, size) => {
        ran = { at, size };
      },
    });
    arriving();
    const vector = await queued;
    if (ran) {
      const done = performance.now();
      recordSpan('batch', parent, epochMs(queuedAt), epochMs(ran.at), { 'embedpool.batch.size': ran.size });
      recordSpan('infer', parent, epochMs(ran.at), epochMs(done), { 'embedpool.batch.size': ran.size });
    }
    metrics?.images.inc({ status: 'ok', reason: '' });
    return vector;
  }
}
