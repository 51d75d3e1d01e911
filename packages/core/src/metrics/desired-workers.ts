/**
 * Replicas that would drain the backlog within the target time at the measured per-worker rate:
 *
 *   desired = clamp(ceil(backlog_images / (images_per_second_per_worker x target_drain_s)), min, max)
 *
 * with at least one worker while anything is waiting, so a scale-to-zero pool (min 0) wakes up. The rate
 * is the mean of the live workers' measured rates, or the configured default before any were measured.
 */
export function desiredWorkers(input: {
  backlogImages: number;
  workerRates: number[];
  targetDrainSeconds: number;
  min: number;
  max: number;
  defaultRate: number;
}): { desired: number; rate: number } {
  const measured = input.workerRates.filter((r) => Number.isFinite(r) && r > 0);
  const rate = measured.length ? measured.reduce((a, b) => a + b, 0) / measured.length : input.defaultRate;
  let desired = Math.ceil(input.backlogImages / (rate * input.targetDrainSeconds));
  if (input.backlogImages > 0) desired = Math.max(desired, 1);
  desired = Math.min(input.max, Math.max(input.min, desired));
  return { desired, rate };
}
