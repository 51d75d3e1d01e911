import { type Command, Option } from 'commander';
import type { BenchArgs } from './bench-args';
import { disableOrtTelemetry, positiveInt, runAction } from './cli-support';
import { intList } from './sku';

interface BenchModule {
  runBench(args: BenchArgs): Promise<number>;
}

// Loaded on use, by URL: the bench is its own TypeScript project (bench/tsconfig.json) and pulls in the API,
// the worker and BullMQ, which the other commands should not pay for.
const BENCH_ENTRY = new URL('../../../../bench/run.ts', import.meta.url).href;

/** What commander hands the action: BenchArgs before the comma lists are split (and without argv). */
type BenchFlags = Omit<BenchArgs, 'quick' | 'splits' | 'sections' | 'argv'> & {
  quick?: boolean;
  splits?: string;
  sections?: string;
};

const commaList = (value: string): string[] =>
  value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description(
      'measure this machine: raw model throughput, preprocessing, end-to-end /score and jobs, Redis cost, ' +
        'RSS and event-loop delay; writes bench/results/<date>-<host>.{json,md} (no network)',
    )
    .option('--quick', '2-3 minutes instead of about 10: fewer batch sizes, shorter phases, no A/B')
    .option('--out <dir>', 'where to write the results (default bench/results)')
    .option('--model <model.onnx>', 'bench this model instead of the random-weight ViT-B/14')
    .option(
      '--cache-dir <dir>',
      'where the random model is cached (default EMBEDPOOL_CACHE_DIR or ~/.cache/embedpool)',
    )
    .addOption(
      new Option('--provider <provider>', 'execution provider').choices(['cpu', 'cuda']).default('cpu'),
    )
    .addOption(
      new Option('--dtype <dtype>', 'weight precision of the random model')
        .choices(['float32', 'float16'])
        .default('float32'),
    )
    .option('--batch-sizes <list>', 'raw batch sizes (default 1,2,4,8,16,32; quick 1,4,8)', intList)
    .option('--splits <list>', 'raw thread layouts <intra-op>x<sessions> (default <cores>x1,<cores/2>x2)')
    .option('--concurrency <list>', 'client concurrencies for sync /score (default 1,4,16)', intList)
    .option('--sections <list>', 'raw,preprocess,micro,e2e,ab,int8,coldstart,pipeline (default all)')
    .option(
      '--ab <variant>',
      'A/B variant of the service, repeatable: NAME=value[,NAME=value] (worker settings, UV_THREADPOOL_SIZE, ' +
        'MALLOC_ARENA_MAX, EMBEDPOOL_BENCH_ORT_CONFIG, EMBEDPOOL_BENCH_ORT_CPU_ARENA); default: MAX_BATCH_SIZE=4, two ' +
        'sessions, three onnxruntime options (see docs/performance.md); none with --quick; "none" for none',
      (value: string, prev: string[] | undefined) => [...(prev ?? []), value],
    )
    .option('--max-batch <n>', 'MAX_BATCH_SIZE of the service under test', positiveInt)
    .option('--seconds <n>', 'seconds per end-to-end load phase (default 20; quick 6)', positiveInt)
    .option(
      '--wait-quiet <seconds>',
      'first wait up to this long for other processes to leave the CPUs idle',
      positiveInt,
    )
    .action(
      runAction(async (flags: BenchFlags) => {
        disableOrtTelemetry();
        const { runBench } = (await import(BENCH_ENTRY)) as BenchModule;
        return runBench({
          quick: flags.quick === true,
          provider: flags.provider,
          dtype: flags.dtype,
          argv: process.argv.slice(3),
          ...(flags.out !== undefined ? { out: flags.out } : {}),
          ...(flags.model !== undefined ? { model: flags.model } : {}),
          ...(flags.cacheDir !== undefined ? { cacheDir: flags.cacheDir } : {}),
          ...(flags.batchSizes !== undefined ? { batchSizes: flags.batchSizes } : {}),
          ...(flags.splits !== undefined ? { splits: commaList(flags.splits) } : {}),
          ...(flags.concurrency !== undefined ? { concurrency: flags.concurrency } : {}),
          ...(flags.sections !== undefined ? { sections: commaList(flags.sections) } : {}),
          ...(flags.ab !== undefined ? { ab: flags.ab } : {}),
          ...(flags.maxBatch !== undefined ? { maxBatch: flags.maxBatch } : {}),
          ...(flags.seconds !== undefined ? { seconds: flags.seconds } : {}),
          ...(flags.waitQuiet !== undefined ? { waitQuiet: flags.waitQuiet } : {}),
        });
      }),
    );
}
