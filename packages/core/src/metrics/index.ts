export { desiredWorkers } from './desired-workers';
export { registerFleetMetrics } from './fleet-metrics';
export { registerProcessMetrics } from './process-metrics';
