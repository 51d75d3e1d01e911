import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import { EmbedpoolError, type ErrorBody } from '../errors';
import type { Logger } from '../logger';
import type { ModelInfo } from './model-info';
import type { FromThread, ReadyReply, RunMessage } from './protocol';
import { DEFAULT_RUNTIME_OPTIONS, type ExecutionProvider, type RuntimeOptions } from './session-options';

// onnxruntime-node's telemetry scans /proc/self/cmdline (a long command line overflows its stack) and would
// try HTTPS uploads. Set in the main thread, which writes the process's real environment, before any session.
process.env.ORT_DISABLE_TELEMETRY ??= '1';

const THREAD_ENTRY = new URL('./inference-thread-entry.mjs', import.meta.url);

export interface EngineOptions {
  modelPath: string;
  runtime?: Partial<RuntimeOptions>;
  /** Inference threads, each with its own session. One is right for most CPUs; more helps only when
   *  intra-op threads are few (see the SKU plans). */
  threads?: number;
  logger?: Logger;
}

export interface InferResult {
  /** count x dim, row-major. */
  embeddings: Float32Array;
  dim: number;
  /** The caller's input buffer, handed back after it travelled to the inference thread. */
  input: Float32Array;
  inferMs: number;
}

interface Pending {
  msg: RunMessage;
  resolve: (r: InferResult) => void;
  reject: (e: EmbedpoolError) => void;
}

interface Slot {
  worker: Worker;
  current: Pending | null;
}

export interface EngineStats {
  runs: number;
  images: number;
  busyMs: number;
}

/**
 * Runs an ONNX DINOv2 model in worker threads. `infer` transfers the caller's buffer to a thread (no
 * copy) and gets it back with the result, so a few preallocated batch buffers serve the whole run.
 */
export class Engine extends EventEmitter {
  readonly info: ModelInfo;
  readonly provider: ExecutionProvider;
  readonly fallbackReason: string | undefined;
  readonly modelPath: string;
  private dimension: number | null;
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;
  private readonly runtime: RuntimeOptions;
  private readonly logger: Logger | undefined;
  readonly stats: EngineStats = { runs: 0, images: 0, busyMs: 0 };

  private constructor(opts: EngineOptions, ready: ReadyReply, runtime: RuntimeOptions) {
    super();
    this.modelPath = opts.modelPath;
    this.info = ready.info;
    this.provider = ready.provider;
    this.fallbackReason = ready.fallbackReason;
    this.dimension = ready.info.dim;
    this.runtime = runtime;
    this.logger = opts.logger;
  }

  static async load(opts: EngineOptions): Promise<Engine> {
    const runtime = { ...DEFAULT_RUNTIME_OPTIONS, ...opts.runtime };
    const count = Math.max(1, opts.threads ?? 1);
    const started = await Promise.allSettled(
      Array.from({ length: count }, () => startThread(opts.modelPath, runtime)),
    );
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) {
      await Promise.all(started.map((s) => (s.status === 'fulfilled' ? s.value.worker.terminate() : null)));
      throw (failed as PromiseRejectedResult).reason;
    }
    const ok = started as PromiseFulfilledResult<{ worker: Worker; ready: ReadyReply }>[];
    const engine = new Engine(opts, ok[0]!.value.ready, runtime);
    for (const { value } of ok) engine.adopt(value.worker);
    if (engine.fallbackReason) {
      opts.logger?.warn(
        { provider: engine.provider, wanted: runtime.executionProvider, reason: engine.fallbackReason },
        'execution provider unavailable; running on CPU',
      );
    }
    opts.logger?.info(
      { model: opts.modelPath, provider: engine.provider, threads: count, info: engine.info },
      'model loaded',
    );
    return engine;
  }

  /** The embedding size; known from the model's output shape, or after the first run. */
  get dim(): number | null {
    return this.dimension;
  }

  get threads(): number {
    return this.slots.length;
  }

  /** Runs currently executing or waiting for a thread. */
  get pending(): number {
    return this.queue.length + this.slots.filter((s) => s.current).length;
  }

  get idle(): boolean {
    return this.pending === 0;
  }

  /**
   * Embeds `count` images laid out as [count,3,height,width] at the start of `input`. The buffer is
   * detached while the run is in flight and comes back in the result (or the rejection's `input`).
   */
  infer(input: Float32Array, count: number, height: number, width: number): Promise<InferResult> {
    if (this.closed) return Promise.reject(new EmbedpoolError('ENGINE_CLOSED', 'engine is closed'));
    if (count < 1 || input.length < count * 3 * height * width) {
      return Promise.reject(new EmbedpoolError('INTERNAL', `input holds fewer than ${count} images`));
    }
    const fixedBatch = this.info.fixedBatch;
    if (fixedBatch !== null && fixedBatch !== count)
      return this.inferFixed(input, count, height, width, fixedBatch);
    return new Promise((resolve, reject) => {
      this.queue.push({
        msg: { type: 'run', id: this.nextId++, input, count, height, width },
        resolve,
        reject,
      });
      this.pump();
    });
  }

  /** Models exported with a fixed batch get padded runs of exactly that size. */
  private async inferFixed(
    input: Float32Array,
    count: number,
    height: number,
    width: number,
    fixedBatch: number,
  ): Promise<InferResult> {
    const per = 3 * height * width;
    const out: Float32Array[] = [];
    let dim = 0;
    let inferMs = 0;
    for (let start = 0; start < count; start += fixedBatch) {
      const n = Math.min(fixedBatch, count - start);
      const chunk = new Float32Array(fixedBatch * per);
      chunk.set(input.subarray(start * per, (start + n) * per));
      const r = await new Promise<InferResult>((resolve, reject) => {
        this.queue.push({
          msg: { type: 'run', id: this.nextId++, input: chunk, count: fixedBatch, height, width },
          resolve,
          reject,
        });
        this.pump();
      });
      dim = r.dim;
      inferMs += r.inferMs;
      out.push(r.embeddings.subarray(0, n * dim));
    }
    const embeddings = new Float32Array(count * dim);
    out.forEach((e, i) => embeddings.set(e, i * fixedBatch * dim));
    return { embeddings, dim, input, inferMs };
  }

  private adopt(worker: Worker): void {
    const slot: Slot = { worker, current: null };
    this.slots.push(slot);
    worker.on('message', (msg: FromThread) => this.onMessage(slot, msg));
    worker.on('error', (err) => this.onThreadDeath(slot, err));
    worker.on('exit', (code) => {
      if (!this.closed) this.onThreadDeath(slot, new Error(`inference thread exited with code ${code}`));
    });
  }

  private onMessage(slot: Slot, msg: FromThread): void {
    const job = slot.current;
    if (!job || msg.type === 'ready' || msg.id !== job.msg.id) return;
    slot.current = null;
    if (msg.type === 'result') {
      this.dimension ??= msg.dim;
      this.stats.runs += 1;
      this.stats.images += job.msg.count;
      this.stats.busyMs += msg.inferMs;
      job.resolve({ embeddings: msg.embeddings, dim: msg.dim, input: msg.input, inferMs: msg.inferMs });
    } else {
      job.reject(runError(msg.error, msg.input));
    }
    this.pump();
    if (this.idle) this.emit('idle');
  }

  /** A thread that dies (native crash, OOM) fails only its own run; a fresh thread takes its place. */
  private onThreadDeath(slot: Slot, err: Error): void {
    const index = this.slots.indexOf(slot);
    if (index < 0) return;
    this.slots.splice(index, 1);
    slot.current?.reject(new EmbedpoolError('INFERENCE_FAILED', `inference thread died: ${err.message}`));
    slot.current = null;
    void slot.worker.terminate();
    if (this.closed) return;
    this.logger?.error({ err }, 'inference thread died; starting a new one');
    startThread(this.modelPath, this.runtime).then(
      ({ worker }) => {
        if (this.closed) void worker.terminate();
        else {
          this.adopt(worker);
          this.pump();
        }
      },
      (e: unknown) => {
        this.logger?.error({ err: e }, 'could not restart inference thread');
        if (this.slots.length === 0) this.failQueued('no inference thread left');
      },
    );
  }

  private failQueued(reason: string): void {
    for (const job of this.queue.splice(0)) job.reject(new EmbedpoolError('INFERENCE_FAILED', reason));
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (slot.current) continue;
      const job = this.queue.shift();
      if (!job) return;
      slot.current = job;
      slot.worker.postMessage(job.msg, [job.msg.input.buffer as ArrayBuffer]);
    }
  }

  /** Finishes the runs already accepted, then stops the threads. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.idle) await new Promise((resolve) => this.once('idle', resolve));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }
}

function runError(body: ErrorBody, input: Float32Array | undefined): EmbedpoolError {
  return new EmbedpoolError(body.code, body.message, input ? { details: { input } } : undefined);
}

function startThread(
  modelPath: string,
  runtime: RuntimeOptions,
): Promise<{ worker: Worker; ready: ReadyReply }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(THREAD_ENTRY);
    const detach = () => {
      worker.off('error', onError);
      worker.off('exit', onExit);
      worker.off('message', onMessage);
    };
    const fail = (err: EmbedpoolError) => {
      detach();
      void worker.terminate();
      reject(err);
    };
    const onError = (err: Error) =>
      fail(new EmbedpoolError('MODEL_INVALID', `inference thread failed: ${err.message}`));
    const onExit = (code: number) =>
      fail(new EmbedpoolError('MODEL_INVALID', `inference thread exited (${code})`));
    const onMessage = (msg: FromThread) => {
      detach();
      if (msg.type === 'ready') resolve({ worker, ready: msg });
      else if (msg.type === 'error') fail(new EmbedpoolError(msg.error.code, msg.error.message));
    };
    worker.on('error', onError);
    worker.on('exit', onExit);
    worker.on('message', onMessage);
    worker.postMessage({ type: 'init', modelPath, runtime });
  });
}
