/**
 * A worker process with ingestion, for the crash tests: what `embedpool worker` runs once worker.ts starts
 * ingestion itself (startWorker, then startIngestWorker over it). Config from the environment.
 */
import { loadConfig } from '@embedpool/core/config';
import { ingestSettingsFrom } from '@embedpool/core/ingest';
import { createLogger } from '@embedpool/core/logger';
import { DINOV2_PREPROCESSOR_CONFIG } from '@embedpool/core/preprocess';
import { startWorker } from '@embedpool/worker';
import { startIngestWorker } from '../../apps/worker/src/ingest';

const config = loadConfig(process.env);
const logger = createLogger({ name: 'worker', level: config.LOG_LEVEL });
const worker = await startWorker({
  config,
  logger,
  model: {
    path: config.MODEL_PATH!,
    modelId: 'parity',
    randomWeights: false,
    preprocessor: DINOV2_PREPROCESSOR_CONFIG,
  },
});
// Once worker.ts starts ingestion itself (its handle has `ingest`), that one runs and this adds nothing.
const wired = (worker as { ingest?: unknown }).ingest !== undefined;
const ingest = wired
  ? undefined
  : await startIngestWorker({ config, worker, logger, settings: ingestSettingsFrom(process.env) });
if (wired) logger.info('ingest worker started');
const stop = async () => {
  await ingest?.close();
  await worker.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
