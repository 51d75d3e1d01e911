import { createLogger } from '@embedpool/core/logger';
import type { ImageRef } from '@embedpool/core/queue';
import { describe, expect, it } from 'vitest';
import type { ScoreAnswer, ScoreCall } from './score-client';
import { ScoreCoalescer } from './score-coalescer';

const log = createLogger({ name: 'test', level: 'silent' });
const DIM = 2;
const img = (n: number): ImageRef => ({ kind: 'url', url: `https://example.test/${n}.jpg` });
const call = (jobId: string, extra: Partial<ScoreCall> = {}): ScoreCall => ({
  jobId,
  timeoutMs: 5_000,
  log,
  ...extra,
});

/** A job runner the test releases by hand; each image's vector is [n, n] from its URL, "fail" URLs fail. */
function manualRunner() {
  const runs: { images: ImageRef[]; call: ScoreCall; release: () => void }[] = [];
  const run = (images: ImageRef[], c: ScoreCall) =>
    new Promise<ScoreAnswer>((resolve, reject) => {
      const release = () => {
        const vectors = new Float32Array(images.length * DIM);
        const failures = images.flatMap((r, index) =>
          r.kind === 'url' && r.url.includes('fail')
            ? [{ index, code: 'IMAGE_DECODE_FAILED' as const, message: 'bad' }]
            : [],
        );
        images.forEach((r, i) => {
          const n = r.kind === 'url' ? Number(/(\d+)\.jpg/.exec(r.url)?.[1] ?? -1) : -1;
          vectors.set([n, n], i * DIM);
        });
        resolve({ result: { count: images.length, dim: DIM, failures, model: 'm' }, vectors });
      };
      c.signal?.addEventListener('abort', () => reject(c.signal?.reason), { once: true });
      runs.push({ images, call: c, release });
    });
  return { runs, run };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('ScoreCoalescer', () => {
  it('sends a request at once, with its own id, when nothing is in flight', async () => {
    const { runs, run } = manualRunner();
    const c = new ScoreCoalescer(run, { windowMs: 50, maxImages: 64 });
    const p = c.score([img(1)], call('req-1'));
    expect(runs).toHaveLength(1);
    expect(runs[0]!.call.jobId).toBe('req-1');
    runs[0]!.release();
    expect(Array.from((await p).vectors)).toEqual([1, 1]);
  });

  it('packs requests that arrive while a job is in flight into one job, each answered with its own rows', async () => {
    const { runs, run } = manualRunner();
    const c = new ScoreCoalescer(run, { windowMs: 20, maxImages: 64 });
    const first = c.score([img(1)], call('a'));
    const second = c.score([img(2), img(3)], call('b'));
    const third = c.score([img(4), { kind: 'url', url: 'https://example.test/fail-5.jpg' }], call('c'));
    expect(runs).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 40));
    expect(runs).toHaveLength(2);
    expect(runs[1]!.images).toHaveLength(4);
    expect(['b', 'c']).not.toContain(runs[1]!.call.jobId);
    runs[1]!.release();
    runs[0]!.release();
    expect(Array.from((await first).vectors)).toEqual([1, 1]);
    const b = await second;
    expect(b.result.count).toBe(2);
    expect(Array.from(b.vectors)).toEqual([2, 2, 3, 3]);
    const cAnswer = await third;
    expect(cAnswer.result.failures).toEqual([{ index: 1, code: 'IMAGE_DECODE_FAILED', message: 'bad' }]);
  });

  it('sends the gathered requests as soon as they reach maxImages', async () => {
    const { runs, run } = manualRunner();
    const c = new ScoreCoalescer(run, { windowMs: 1_000, maxImages: 3 });
    void c.score([img(1)], call('a'));
    void c.score([img(2), img(3)], call('b'));
    expect(runs).toHaveLength(1);
    void c.score([img(4)], call('c'));
    await tick();
    expect(runs).toHaveLength(2);
    expect(runs[1]!.images).toHaveLength(3);
    for (const r of runs) r.release();
  });

  it('lets one request of a shared job leave alone, and gives the job up only when all have left', async () => {
    const { runs, run } = manualRunner();
    const c = new ScoreCoalescer(run, { windowMs: 5, maxImages: 64 });
    void c.score([img(1)], call('a')).catch(() => {});
    const goneB = new AbortController();
    const goneC = new AbortController();
    const b = c.score([img(2)], call('b', { signal: goneB.signal }));
    const cc = c.score([img(3)], call('c', { signal: goneC.signal }));
    await new Promise((r) => setTimeout(r, 20));
    expect(runs).toHaveLength(2);
    const shared = runs[1]!;
    goneB.abort(new Error('client b left'));
    await expect(b).rejects.toThrow('client b left');
    expect(shared.call.signal?.aborted).toBe(false);
    goneC.abort(new Error('client c left'));
    await expect(cc).rejects.toThrow('client c left');
    expect(shared.call.signal?.aborted).toBe(true);
    runs[0]!.release();
  });

  it('times a member out on its own deadline while the shared job carries on for the others', async () => {
    const { runs, run } = manualRunner();
    const c = new ScoreCoalescer(run, { windowMs: 5, maxImages: 64 });
    void c.score([img(1)], call('a'));
    const short = c.score([img(2)], call('b', { timeoutMs: 30 }));
    const long = c.score([img(3)], call('c'));
    await expect(short).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect(runs[1]!.call.signal?.aborted).toBe(false);
    runs[1]!.release();
    expect(Array.from((await long).vectors)).toEqual([3, 3]);
    runs[0]!.release();
  });

  it('past maxJobsInFlight, gathers until one of its jobs ends, then sends everything gathered as one job', async () => {
    const { runs, run } = manualRunner();
    const c = new ScoreCoalescer(run, { windowMs: 5, maxImages: 64, maxJobsInFlight: 2 });
    const a = c.score([img(1)], call('a'));
    const b = c.score([img(2)], call('b'));
    await new Promise((r) => setTimeout(r, 20));
    expect(runs).toHaveLength(2);
    const later = [3, 4, 5].map((n) => c.score([img(n)], call(`r${n}`)));
    // The window passes, but two jobs are in flight: the three wait for a slot.
    await new Promise((r) => setTimeout(r, 20));
    expect(runs).toHaveLength(2);
    runs[0]!.release();
    await a;
    // A request answered by that job comes back at once and still makes it into the next one.
    const again = c.score([img(6)], call('r6'));
    await tick();
    expect(runs).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 20));
    expect(runs).toHaveLength(3);
    expect(runs[2]!.images).toHaveLength(4);
    runs[2]!.release();
    runs[1]!.release();
    await b;
    expect((await Promise.all([...later, again])).map((x) => Array.from(x.vectors))).toEqual([
      [3, 3],
      [4, 4],
      [5, 5],
      [6, 6],
    ]);
  });

  it('times out and drops gathered requests on their own deadline and client, even while no slot frees', async () => {
    const { runs, run } = manualRunner();
    const c = new ScoreCoalescer(run, { windowMs: 5, maxImages: 64, maxJobsInFlight: 1 });
    void c.score([img(1)], call('a'));
    const gone = new AbortController();
    const left = c.score([img(2)], call('b', { signal: gone.signal }));
    const short = c.score([img(3)], call('c', { timeoutMs: 30 }));
    const long = c.score([img(4)], call('d'));
    gone.abort(new Error('client b left'));
    await expect(left).rejects.toThrow('client b left');
    // Job a is still running: the short request times out while gathering, not when the slot frees.
    await expect(short).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect(runs).toHaveLength(1);
    runs[0]!.release();
    await new Promise((r) => setTimeout(r, 20));
    expect(runs).toHaveLength(2);
    expect(runs[1]!.images).toHaveLength(1);
    runs[1]!.release();
    expect(Array.from((await long).vectors)).toEqual([4, 4]);
  });
});
