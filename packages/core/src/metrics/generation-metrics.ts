import { Gauge, type Registry } from 'prom-client';
import type { GenerationWatch } from '../queue/generation';

/**
 * Whether Redis lost its data (see queue/generation.ts), for alerts: `embedpool_redis_data_lost` is 1 from the
 * moment a loss is known for `relevantS` (JOB_TTL_S: after that, every record from before would have expired).
 */
export function registerGenerationMetrics(
  registry: Registry,
  watch: GenerationWatch,
  relevantS: number,
): void {
  if (registry.getSingleMetric('embedpool_redis_data_lost')) return;
  new Gauge({
    name: 'embedpool_redis_data_lost',
    help: 'Is 1 when Redis lost its data (jobs, results, ingestions recorded before then are gone).',
    registers: [registry],
    collect() {
      const at = watch.lostAt;
      this.set(at !== undefined && Date.now() - at < relevantS * 1000 ? 1 : 0);
    },
  });
  new Gauge({
    name: 'embedpool_redis_data_lost_timestamp_seconds',
    help: 'When Redis lost its data (0: never).',
    registers: [registry],
    collect() {
      this.set((watch.lostAt ?? 0) / 1000);
    },
  });
  new Gauge({
    name: 'embedpool_redis_data_losses_detected',
    help: 'Losses of Redis data this process saw happen while it ran.',
    registers: [registry],
    collect() {
      this.set(watch.detected);
    },
  });
}
