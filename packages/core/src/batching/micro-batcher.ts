import { EventEmitter } from 'node:events';
import type { Engine } from '../engine';
import { EmbedpoolError, toEmbedpoolError } from '../errors';

/** An image ready for the model: it writes its own pixels into a slot of the batch tensor. */
export interface BatchItem {
  fill(out: Float32Array, offset: number): void;
  /** Called when the batch holding this image goes to the model (tracing: where waiting ends). */
  dispatched?(at: number, size: number): void;
}

export interface MicroBatcherOptions {
  maxBatchSize: number;
  /** How long a batch may wait to grow while more images are known to be on their way. */
  batchWaitMs: number;
  height: number;
  width: number;
}

export interface BatchEvent {
  size: number;
  inferMs: number;
  waitMs: number;
}

interface Queued {
  item: BatchItem;
  enqueuedAt: number;
  resolve: (v: Float32Array) => void;
  reject: (e: EmbedpoolError) => void;
}

/**
 * Packs images from many jobs into shared model runs. A batch leaves when it is full, when the model is
 * free and nothing more is on its way, or when the oldest image has waited `batchWaitMs`: waiting only
 * pays when a batch can grow, so a lone request on an idle model runs at once. Images arriving while the
 * model is busy pile up into the next batch, which keeps the model fed without a timer.
 *
 * Emits `batch` (BatchEvent) after each model run.
 */
export class MicroBatcher extends EventEmitter {
  private readonly queue: Queued[] = [];
  private readonly freeBuffers: Float32Array[] = [];
  private readonly perImage: number;
  private running = 0;
  private incoming = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly engine: Engine,
    private readonly opts: MicroBatcherOptions,
  ) {
    super();
    this.perImage = 3 * opts.height * opts.width;
  }

  /** Images queued or running. */
  get depth(): number {
    return this.queue.length + this.running;
  }

  /**
   * Tells the batcher an image is being fetched or decoded and will arrive (or be abandoned) soon, so an
   * idle model may wait a little for it instead of running a smaller batch. Returns the release function.
   */
  expect(): () => void {
    this.incoming++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.incoming--;
      this.schedule();
    };
  }

  embed(item: BatchItem): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new EmbedpoolError('ENGINE_CLOSED', 'batcher is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ item, enqueuedAt: performance.now(), resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    while (this.queue.length > 0 && this.running < this.engine.threads) {
      const full = this.queue.length >= this.opts.maxBatchSize;
      const waited = performance.now() - this.queue[0]!.enqueuedAt;
      if (!full && this.incoming > 0 && waited < this.opts.batchWaitMs) {
        this.armTimer(this.opts.batchWaitMs - waited);
        return;
      }
      this.dispatch(this.queue.splice(0, this.opts.maxBatchSize));
    }
  }

  private armTimer(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.schedule();
      },
      Math.max(0, Math.ceil(ms)),
    );
  }

  private takeBuffer(): Float32Array {
    return this.freeBuffers.pop() ?? new Float32Array(this.opts.maxBatchSize * this.perImage);
  }

  private dispatch(batch: Queued[]): void {
    this.running++;
    void this.run(batch).finally(() => {
      this.running--;
      this.schedule();
      if (this.depth === 0) this.emit('drain');
    });
  }

  /** Runs a batch; when the whole batch fails, each image is tried alone so one poison input fails only itself. */
  private async run(batch: Queued[]): Promise<void> {
    const buffer = this.takeBuffer();
    const filled: Queued[] = [];
    for (const q of batch) {
      try {
        q.item.fill(buffer, filled.length * this.perImage);
        filled.push(q);
      } catch (err) {
        q.reject(toEmbedpoolError(err));
      }
    }
    if (filled.length === 0) {
      this.freeBuffers.push(buffer);
      return;
    }
    const dispatchedAt = performance.now();
    const waitMs = dispatchedAt - filled[0]!.enqueuedAt;
    for (const q of filled) q.item.dispatched?.(dispatchedAt, filled.length);
    try {
      const r = await this.engine.infer(buffer, filled.length, this.opts.height, this.opts.width);
      this.freeBuffers.push(r.input);
      // Before the answers, so a listener (metrics) has counted the run by the time a caller sees its vector.
      this.emit('batch', { size: filled.length, inferMs: r.inferMs, waitMs } satisfies BatchEvent);
      filled.forEach((q, i) => q.resolve(r.embeddings.slice(i * r.dim, (i + 1) * r.dim)));
    } catch (err) {
      const e = toEmbedpoolError(err, 'INFERENCE_FAILED');
      const returned = e.details?.input;
      if (returned instanceof Float32Array && returned.length > 0) this.freeBuffers.push(returned);
      if (filled.length === 1) {
        filled[0]!.reject(e);
        return;
      }
      for (const q of filled) await this.run([q]);
    }
  }

  /** Stops taking images and waits for everything queued to finish. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.depth > 0) await new Promise((resolve) => this.once('drain', resolve));
    if (this.timer) clearTimeout(this.timer);
  }
}
