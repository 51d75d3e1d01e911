import type { Logger } from '@embedpool/core/logger';
import { type DetectedSku, detectSku, planToEnv } from '@embedpool/core/sku';

/** Settings a plan may fill in; CUDA_DEVICE_ID and UV_THREADPOOL_SIZE belong to the launcher (one process per GPU). */
const PLANNED = [
  'EXECUTION_PROVIDER',
  'INTRA_OP_THREADS',
  'INFERENCE_THREADS',
  'DECODE_CONCURRENCY',
  'MAX_BATCH_SIZE',
  'BATCH_WAIT_MS',
  'WORKER_CONCURRENCY',
] as const;

/**
 * The worker sizes itself for the machine it lands on (WORKER_SKU, Azure IMDS when DMI says Azure, else
 * local detection): the plan's values become the defaults of the variables the environment leaves unset,
 * so an operator's explicit setting always wins.
 */
export async function planDefaults(
  env: NodeJS.ProcessEnv,
  logger: Logger,
): Promise<{ env: NodeJS.ProcessEnv; detected: DetectedSku }> {
  const detected = await detectSku({ env });
  const planned = planToEnv(detected.plan)[0] ?? {};
  const applied: Record<string, string> = {};
  for (const key of PLANNED) {
    const value = (planned as Record<string, string | undefined>)[key];
    if (value !== undefined && (env[key] === undefined || env[key] === '')) applied[key] = value;
  }
  logger.info(
    { source: detected.source, size: detected.size, applied, warnings: detected.plan.warnings },
    'worker plan',
  );
  return { env: { ...env, ...applied }, detected };
}
