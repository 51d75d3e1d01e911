import { monitorEventLoopDelay } from 'node:perf_hooks';
import { collectDefaultMetrics, Gauge, type Registry } from 'prom-client';

/**
 * How often each event-loop delay monitor wakes the loop. A stall shows in full whatever the resolution (the
 * late tick records it); at prom-client's default of 10 ms, the two monitors (prom-client's and ours) woke
 * an idle API or worker 200 times a second, ~5 CPU ms/s each process spends doing nothing (the pipeline
 * bench's idle background); at 50 ms, ~1.
 */
const LAG_RESOLUTION_MS = 50;

/**
 * Node's own series (memory, CPU, GC) plus event-loop lag quantiles since the previous scrape: a worker
 * whose loop stalls cannot renew its queue locks, so lag is a health signal, not a curiosity.
 */
export function registerProcessMetrics(registry: Registry): void {
  if (registry.getSingleMetric('embedpool_event_loop_lag_seconds')) return;
  if (!registry.getSingleMetric('process_cpu_user_seconds_total'))
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: LAG_RESOLUTION_MS });
  const h = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  h.enable();
  new Gauge({
    name: 'embedpool_event_loop_lag_seconds',
    help: 'Event-loop delay since the previous scrape, by quantile.',
    labelNames: ['quantile'] as const,
    registers: [registry],
    collect() {
      this.set({ quantile: '0.5' }, h.percentile(50) / 1e9);
      this.set({ quantile: '0.99' }, h.percentile(99) / 1e9);
      this.set({ quantile: '1' }, h.max / 1e9);
      h.reset();
    },
  });
}
