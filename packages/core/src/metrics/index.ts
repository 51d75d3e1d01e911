export { desiredWorkers } from './desired-workers';
export { registerFleetMetrics } from './fleet-metrics';
export { registerGenerationMetrics } from './generation-metrics';
export { registerProcessMetrics } from './process-metrics';
