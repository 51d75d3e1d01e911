import { randomUUID } from 'node:crypto';
import { EmbedpoolError } from '@embedpool/core/errors';
import type { ImageRef, ItemFailure } from '@embedpool/core/queue';
import type { ScoreAnswer, ScoreCall } from './score-client';

/** Runs one queue job for `images` and waits for its answer (ScoreClient's single-job path). */
export type RunJob = (images: ImageRef[], call: ScoreCall) => Promise<ScoreAnswer>;

export interface CoalescerOptions {
  /**
   * Longest a request waits for company, and only while this process already has a job in flight. Within
   * it, the wait is a tenth of what jobs take now (a running average), so gathering never adds more than
   * ~10% to a request's latency: 2 ms behind 20-ms GPU jobs, the whole window behind a deep queue.
   */
  windowMs: number;
  /** Images in one coalesced job at most. */
  maxImages: number;
  /**
   * Jobs of this process in flight at most while requests are gathering (default 2: one running, one
   * queued behind it). Past it, gathered requests wait for a job to finish instead of the window: the
   * workers are busy with our earlier work, so the wait moves queueing from the workers to here at no cost
   * in throughput, and the next job carries everything that arrived meanwhile. Without it, closed-loop
   * clients settle into as many small jobs as fit the window (16 one-image clients: ~4 images per job, ~19
   * Redis commands per image); with it, about clients / 2 per job (see `solo`). Two jobs of up to `maxImages` each keep
   * a GPU worker busy at far more images per second than one API process can parse.
   */
  maxJobsInFlight?: number;
}

interface Member {
  images: ImageRef[];
  call: ScoreCall;
  /** When the request's own deadline passes (its timeoutMs counts from its arrival, not from the flush). */
  deadline: number;
  resolve: (a: ScoreAnswer) => void;
  reject: (e: unknown) => void;
  settled: boolean;
  /** Stops the deadline and abort watch it has while gathering. */
  stopGathering: () => void;
}

/**
 * Packs concurrent synchronous requests into one queue job. A BullMQ job costs Redis some forty commands
 * whatever it carries, so under load one job per few milliseconds instead of one per request is what lets one
 * Redis feed a fleet. Idle, nothing waits: a request that finds no job of this process in flight goes at
 * once; only while one is (the workers are busy with our earlier work anyway) do new requests gather for up to
 * `windowMs`, or until `maxImages`; and while `maxJobsInFlight` of ours are in flight, until one of them ends.
 *
 * Each request keeps its own deadline and client: one that times out or goes away leaves the shared job
 * alone and answers for itself; the job is cancelled only when every request in it is gone.
 */
export class ScoreCoalescer {
  private gathering: Member[] = [];
  private gatheredImages = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  /** The window closed while the in-flight cap was reached: the gathered requests go when a job ends. */
  private due = false;
  /** Running average of a job's time from enqueue to answer, in ms. */
  private jobMs = 0;

  constructor(
    private readonly run: RunJob,
    private readonly opts: CoalescerOptions,
  ) {}

  score(images: ImageRef[], call: ScoreCall): Promise<ScoreAnswer> {
    if (call.signal?.aborted) return Promise.reject(call.signal.reason);
    // Alone, or nothing gained by waiting: the plain path, with the request's own id and deadline.
    if (this.opts.windowMs <= 0 || (this.inFlight === 0 && this.gathering.length === 0)) {
      return this.solo(images, call);
    }
    return new Promise<ScoreAnswer>((resolve, reject) => {
      const m: Member = {
        images,
        call,
        deadline: Date.now() + call.timeoutMs,
        resolve,
        reject,
        settled: false,
        stopGathering: () => {},
      };
      this.gather(m);
      this.gatheredImages += images.length;
      if (this.gatheredImages >= this.opts.maxImages) this.flush();
      else if (!this.due) this.timer ??= setTimeout(() => this.windowClosed(), this.window());
    });
  }

  /**
   * Adds a request to the gathering, watching its deadline and its client meanwhile: waiting for a slot can
   * take as long as a job, and a request must not outlive its own deadline in here.
   */
  private gather(m: Member): void {
    const leave = (err: unknown) => {
      const i = this.gathering.indexOf(m);
      if (i < 0) return;
      this.gathering.splice(i, 1);
      this.gatheredImages -= m.images.length;
      m.stopGathering();
      m.settled = true;
      m.reject(err);
    };
    const timer = setTimeout(
      () =>
        leave(
          new EmbedpoolError('TIMEOUT', `no answer within ${m.call.timeoutMs} ms; the request was dropped`),
        ),
      m.call.timeoutMs,
    );
    const onAbort = () => leave(m.call.signal?.reason ?? new Error('aborted'));
    m.call.signal?.addEventListener('abort', onAbort, { once: true });
    m.stopGathering = () => {
      clearTimeout(timer);
      m.call.signal?.removeEventListener('abort', onAbort);
    };
    this.gathering.push(m);
  }

  private windowClosed(): void {
    this.timer = undefined;
    if (this.inFlight < (this.opts.maxJobsInFlight ?? 2)) this.flush();
    else this.due = true;
  }

  private window(): number {
    return Math.min(this.opts.windowMs, Math.max(1, this.jobMs / 10));
  }

  private async solo(images: ImageRef[], call: ScoreCall): Promise<ScoreAnswer> {
    this.inFlight++;
    const t0 = performance.now();
    try {
      const answer = await this.run(images, call);
      const ms = performance.now() - t0;
      this.jobMs = this.jobMs === 0 ? ms : 0.8 * this.jobMs + 0.2 * ms;
      return answer;
    } finally {
      this.inFlight--;
      if (this.due && this.inFlight < (this.opts.maxJobsInFlight ?? 2)) {
        // One more window before they go: under load the clients this job just answered send again at
        // once, and they join this job instead of starting a group of their own (the other job in flight
        // keeps the workers busy meanwhile). Without it, closed-loop clients split into three groups, not two.
        this.due = false;
        this.timer ??= setTimeout(() => this.windowClosed(), this.window());
      }
    }
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.due = false;
    const members = this.gathering;
    for (const m of members) m.stopGathering();
    this.gathering = [];
    this.gatheredImages = 0;
    if (members.length === 1) {
      const m = members[0]!;
      const timeoutMs = Math.max(1, m.deadline - Date.now());
      this.solo(m.images, { ...m.call, timeoutMs }).then(m.resolve, m.reject);
    } else if (members.length > 1) {
      void this.group(members);
    }
  }

  private async group(members: Member[]): Promise<void> {
    const offsets: number[] = [];
    const images: ImageRef[] = [];
    for (const m of members) {
      offsets.push(images.length);
      images.push(...m.images);
    }
    // The shared job is given up only once every member has left; each member leaves on its own terms.
    const everyoneGone = new AbortController();
    let left = members.length;
    const leave = (m: Member, err: unknown) => {
      if (m.settled) return;
      m.settled = true;
      m.reject(err);
      if (--left === 0) everyoneGone.abort(err);
    };
    const cleanups = members.map((m) => {
      const timer = setTimeout(
        () =>
          leave(
            m,
            new EmbedpoolError('TIMEOUT', `no answer within ${m.call.timeoutMs} ms; the request was dropped`),
          ),
        Math.max(0, m.deadline - Date.now()),
      );
      const onAbort = () => leave(m, m.call.signal?.reason ?? new Error('aborted'));
      m.call.signal?.addEventListener('abort', onAbort, { once: true });
      return () => {
        clearTimeout(timer);
        m.call.signal?.removeEventListener('abort', onAbort);
      };
    });
    const first = members[0]!.call;
    const jobId = randomUUID();
    first.log.debug({ jobId, requests: members.length, images: images.length }, 'coalesced score job');
    try {
      const answer = await this.solo(images, {
        jobId,
        timeoutMs: Math.max(1, ...members.map((m) => m.deadline - Date.now())),
        signal: everyoneGone.signal,
        log: first.log.child({ coalescedJobId: jobId }),
      });
      members.forEach((m, i) => {
        if (m.settled) return;
        m.settled = true;
        try {
          m.resolve(slice(answer, offsets[i]!, m.images.length));
        } catch (err) {
          m.reject(err);
        }
      });
    } catch (err) {
      for (const m of members) {
        if (m.settled) continue;
        m.settled = true;
        m.reject(err);
      }
    } finally {
      for (const c of cleanups) c();
    }
  }
}

/** One member's part of a coalesced answer: its rows, its failures renumbered from 0. */
function slice(answer: ScoreAnswer, offset: number, n: number): ScoreAnswer {
  const { result, vectors } = answer;
  const failures: ItemFailure[] = result.failures
    .filter((f) => f.index >= offset && f.index < offset + n)
    .map((f) => ({ ...f, index: f.index - offset }));
  const dim = result.dim;
  if (failures.length > 0) return { result: { ...result, count: n, failures }, vectors: new Float32Array(0) };
  if (vectors.length < (offset + n) * dim)
    throw new EmbedpoolError('INTERNAL', 'coalesced score result is missing rows');
  return {
    result: { ...result, count: n, failures },
    vectors: vectors.subarray(offset * dim, (offset + n) * dim),
  };
}
