import type { MicroBatcher } from '@embedpool/core/batching';
import { EmbedpoolError, type ErrorBody, toEmbedpoolError } from '@embedpool/core/errors';
import { type PreprocessOptions, preprocess } from '@embedpool/core/preprocess';
import { readImageFile } from './embed-input';

export type EmbedLine = { file: string; image_features: number[] } | { file: string; error: ErrorBody };

/** `embedpool embed`: local files through an in-process model (the queue pipeline is apps/worker's). */
export interface LocalEmbedOptions {
  files: readonly string[];
  batcher: MicroBatcher;
  /** Preprocess options with the limits resolved (maxBytes is needed before reading a file). */
  preprocess: PreprocessOptions & { maxBytes: number };
  /** Floats one preprocessed image holds: 3 * height * width of the batcher. */
  floats: number;
  /** Files read and decoded at once (each holds its encoded bytes and decoder memory). */
  decodeConcurrency: number;
  /** Files started but not yet written; bounds the pixels held and the reordering buffer. */
  window: number;
  emit(line: string): Promise<void>;
  onLine?(line: EmbedLine, done: number): void;
  /** Stops starting and writing files; those in flight finish (and are dropped) so threads end cleanly. */
  signal?: AbortSignal;
}

/** A counting semaphore: at most `size` callers inside `run` at once, the rest wait in order. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(size: number) {
    this.free = size;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

/**
 * Embeds files in input order: each is read, decoded, queued into the shared batcher, and its line
 * written as soon as it and every file before it are done. At most `window` files are in flight, so
 * memory does not grow with the number of files; a slow file holds back the writes behind it, not
 * their decoding (up to the window).
 */
export async function runLocalEmbed(
  opts: LocalEmbedOptions,
): Promise<{ ok: number; failed: number; interrupted: boolean }> {
  const decodeSlots = new Slots(opts.decodeConcurrency);

  // Never rejects: every failure is that file's error line.
  const embedOne = async (file: string): Promise<EmbedLine> => {
    // Announced at once, so an idle model waits briefly for a fuller batch instead of running one image.
    const arrived = opts.batcher.expect();
    try {
      const pixels = await decodeSlots.run(async () => {
        const bytes = await readImageFile(file, opts.preprocess.maxBytes);
        return preprocess(bytes, opts.preprocess);
      });
      if (pixels.length !== opts.floats) {
        throw new EmbedpoolError('INTERNAL', `preprocessed ${pixels.length} floats, expected ${opts.floats}`);
      }
      const vector = opts.batcher.embed({ fill: (out, offset) => out.set(pixels, offset) });
      arrived();
      return { file, image_features: Array.from(await vector) };
    } catch (err) {
      arrived();
      return { file, error: toEmbedpoolError(err).toJSON() };
    }
  };

  const inflight: Promise<EmbedLine>[] = [];
  let next = 0;
  const launch = () => {
    while (!opts.signal?.aborted && next < opts.files.length && inflight.length < opts.window) {
      inflight.push(embedOne(opts.files[next++]!));
    }
  };
  let ok = 0;
  let failed = 0;
  launch();
  while (inflight.length > 0) {
    const line = await inflight.shift()!;
    if (opts.signal?.aborted) {
      await Promise.all(inflight);
      return { ok, failed, interrupted: true };
    }
    launch();
    if ('error' in line) failed++;
    else ok++;
    await opts.emit(`${JSON.stringify(line)}\n`);
    opts.onLine?.(line, ok + failed);
  }
  return { ok, failed, interrupted: false };
}
