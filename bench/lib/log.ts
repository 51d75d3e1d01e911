/** Progress lines on stderr, stamped with seconds since the bench started (children share the clock). */
const T0 = Number(process.env.EMBEDPOOL_BENCH_T0) || Date.now();
process.env.EMBEDPOOL_BENCH_T0 ??= String(T0);

export function progress(message: string): void {
  const s = ((Date.now() - T0) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[bench ${s}s] ${message}\n`);
}
