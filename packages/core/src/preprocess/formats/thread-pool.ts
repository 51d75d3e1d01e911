import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { EmbedpoolError } from '../../errors';
import type { DecodeReply, DecodeRequest } from './protocol';
import type { ExtraFormat, Raster, RasterHeader } from './raster';

/**
 * A few threads for the decoders that are not sharp (JavaScript and WebAssembly run on the thread that
 * calls them, unlike libvips). Threads start on first use and are unref'd while idle, so an idle pool keeps
 * no process alive. A task that runs past its time limit has its thread terminated (the only way to stop
 * WebAssembly) and rejects with IMAGE_DECODE_TIMEOUT; the next task gets a fresh thread.
 */

const THREAD_ENTRY = new URL('./decode-thread-entry.mjs', import.meta.url);

export interface DecodeTask {
  op: DecodeRequest['op'];
  format: ExtraFormat;
  bytes: Uint8Array;
  maxInputPixels: number;
  /** 0: no limit. */
  timeoutSeconds: number;
}

interface Pending {
  task: DecodeTask;
  resolve: (value: DecodeResult) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  worker: Worker;
  current: (Pending & { id: number; timer: NodeJS.Timeout | undefined }) | undefined;
}

export interface DecodeResult {
  header: RasterHeader;
  raster?: Raster;
  /** The thread that decoded (never the caller's). */
  threadId: number;
}

export class DecodeThreadPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;

  constructor(private readonly size: number) {}

  run(task: DecodeTask): Promise<DecodeResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ task, resolve, reject });
      this.pump();
    });
  }

  /** Stops every thread; queued and running tasks reject. */
  async close(): Promise<void> {
    const err = new EmbedpoolError('INTERNAL', 'decoder threads closed');
    for (const p of this.queue.splice(0)) p.reject(err);
    await Promise.all(this.slots.splice(0).map((s) => this.stop(s, err)));
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => !s.current);
      if (!slot && this.slots.length < this.size) slot = this.spawn();
      if (!slot) return;
      this.dispatch(slot, this.queue.shift()!);
    }
  }

  private spawn(): Slot {
    const worker = new Worker(THREAD_ENTRY);
    const slot: Slot = { worker, current: undefined };
    worker.unref();
    worker.on('message', (reply: DecodeReply) => this.onReply(slot, reply));
    worker.on('error', (err) => this.onExit(slot, err));
    worker.on('exit', (code) => this.onExit(slot, new Error(`decoder thread exited (${code})`)));
    this.slots.push(slot);
    return slot;
  }

  private dispatch(slot: Slot, pending: Pending): void {
    const id = this.nextId++;
    const { task } = pending;
    const timer =
      task.timeoutSeconds > 0
        ? setTimeout(() => this.onTimeout(slot, id), task.timeoutSeconds * 1000)
        : undefined;
    slot.current = { ...pending, id, timer };
    slot.worker.ref();
    const msg: DecodeRequest = {
      id,
      op: task.op,
      format: task.format,
      bytes: task.bytes,
      maxInputPixels: task.maxInputPixels,
    };
    slot.worker.postMessage(msg);
  }

  private finish(slot: Slot): Pending | undefined {
    const current = slot.current;
    if (!current) return undefined;
    clearTimeout(current.timer);
    slot.current = undefined;
    slot.worker.unref();
    return current;
  }

  private onReply(slot: Slot, reply: DecodeReply): void {
    if (slot.current?.id !== reply.id) return;
    const done = this.finish(slot)!;
    if (reply.ok) {
      const { header, raster, threadId } = reply;
      done.resolve(raster ? { header, raster, threadId } : { header, threadId });
    } else {
      const { code, message, details } = reply.error;
      done.reject(new EmbedpoolError(code, message, details ? { details } : undefined));
    }
    this.pump();
  }

  private onTimeout(slot: Slot, id: number): void {
    if (slot.current?.id !== id) return;
    const { task } = slot.current;
    const err = new EmbedpoolError(
      'IMAGE_DECODE_TIMEOUT',
      `image decoding timed out after ${task.timeoutSeconds} s (${task.format})`,
      { details: { format: task.format, timeoutSeconds: task.timeoutSeconds } },
    );
    void this.stop(slot, err);
    this.pump();
  }

  /** A thread that died (WebAssembly out of memory, a crash): its task fails, the pool carries on. */
  private onExit(slot: Slot, cause: Error): void {
    const index = this.slots.indexOf(slot);
    if (index < 0) return;
    this.slots.splice(index, 1);
    const done = this.finish(slot);
    done?.reject(
      new EmbedpoolError('IMAGE_DECODE_FAILED', `image could not be decoded: ${cause.message}`, { cause }),
    );
    this.pump();
  }

  private async stop(slot: Slot, err: EmbedpoolError): Promise<void> {
    const index = this.slots.indexOf(slot);
    if (index >= 0) this.slots.splice(index, 1);
    this.finish(slot)?.reject(err);
    slot.worker.removeAllListeners('message');
    slot.worker.removeAllListeners('exit');
    slot.worker.on('error', () => {});
    await slot.worker.terminate();
  }
}

let shared: DecodeThreadPool | undefined;

/** The process-wide pool: up to 4 threads, fewer on small machines (the decode concurrency bounds use). */
export function decodeThreads(): DecodeThreadPool {
  shared ??= new DecodeThreadPool(Math.max(1, Math.min(4, availableParallelism())));
  return shared;
}
