/**
 * What `embedpool bench` hands to bench/run.ts `runBench`; everything optional has a per-mode default.
 * The CLI owns it (bench/ imports the type): bench/ is loaded by URL on use, so the CLI never compiles it.
 */
export interface BenchArgs {
  quick: boolean;
  /** Output directory; default bench/results. */
  out?: string;
  /** An ONNX model to bench instead of the random-weight ViT-B/14. */
  model?: string;
  /** Where the random model is cached; default EMBEDPOOL_CACHE_DIR or ~/.cache/embedpool. */
  cacheDir?: string;
  provider: 'cpu' | 'cuda';
  dtype: 'float32' | 'float16';
  batchSizes?: number[];
  /** `<intra-op threads>x<sessions>`, e.g. 2x1,1x2. */
  splits?: string[];
  concurrency?: number[];
  sections?: string[];
  /** Extra worker settings for the A/B section, one variant per entry: `MAX_BATCH_SIZE=4,BATCH_WAIT_MS=0`. */
  ab?: string[];
  /** MAX_BATCH_SIZE of the service under test (else the environment's, else the default). */
  maxBatch?: number;
  /** Seconds per end-to-end load phase. */
  seconds?: number;
  /** Wait up to this many seconds for other processes to leave the CPUs idle before starting. */
  waitQuiet?: number;
  /** The command line, for the record. */
  argv?: string[];
}
