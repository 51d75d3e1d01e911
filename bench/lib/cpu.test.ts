import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { processTicks, threadTicks } from './cpu';

/** Burns CPU on the calling thread for `ms` of wall time. */
function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) Math.sqrt(Math.random());
}

describe('threadTicks', () => {
  it("splits a process's CPU by thread: the main thread apart, the rest by name, summing to the whole", async () => {
    // A busy second thread, so there is CPU off the main thread to find.
    const worker = new Worker(
      'const end = performance.now() + 300; while (performance.now() < end) Math.sqrt(Math.random()); require("node:worker_threads").parentPort.postMessage("done");',
      { eval: true },
    );
    const done = new Promise((resolve) => worker.once('message', resolve));
    const before = threadTicks(process.pid);
    spin(300);
    await done;
    const after = threadTicks(process.pid);
    const whole = processTicks(process.pid)!;
    await worker.terminate();

    expect(Object.keys(after)).toContain('main');
    expect(after.main! - (before.main ?? 0)).toBeGreaterThan(0);
    const others = Object.entries(after)
      .filter(([k]) => k !== 'main')
      .reduce((sum, [k, v]) => sum + v - (before[k] ?? 0), 0);
    expect(others).toBeGreaterThan(0);
    // Threads that already ended are not listed, so the parts can only fall short of the whole.
    const parts = Object.values(after).reduce((a, b) => a + b, 0);
    expect(parts).toBeLessThanOrEqual(whole + 1);
  });

  it('is empty for a process that does not exist', () => {
    expect(threadTicks(2 ** 22 + 12345)).toEqual({});
  });
});
