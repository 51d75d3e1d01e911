import { mkdir, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { EmbedpoolError } from '@embedpool/core/errors';
import {
  type CalibrateEvent,
  type CalibrationResult,
  calibrate,
  DEFAULT_CALIBRATE_BATCH_SIZES,
  DEFAULT_CALIBRATE_SECONDS,
  detectSku,
  feedEstimate,
  findVmSize,
  formatEnvFile,
  MEASURED_WORKER_CPU,
  planForSize,
  planToEnv,
  VM_SIZES,
  type WorkerPlan,
} from '@embedpool/core/sku';
import { type Command, InvalidArgumentError } from 'commander';
import { disableOrtTelemetry, positiveInt, requireModelFile, runAction } from './cli-support';

const GiB = 2 ** 30;

/** `1,2,4` -> [1, 2, 4]; commander parser for --batch-sizes and --threads. */
export function intList(value: string): number[] {
  const parts = value.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p) || Number(p) < 1)) {
    throw new InvalidArgumentError('must be a comma-separated list of positive integers.');
  }
  return parts.map(Number);
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+(\.\d+)?\s*$/.test(value) || !(n > 0))
    throw new InvalidArgumentError('must be a positive number.');
  return n;
}

/** Left-aligned text table; numbers are right-aligned. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number'));
  return `${cells
    .map((r) =>
      r
        .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

const gib = (bytes: number) => `${(bytes / GiB).toFixed(1)} GiB`;

function threadsCell(p: WorkerPlan): string {
  return `${p.inferenceThreads}x${p.intraOpThreads} intra, ${p.decodeThreads} decode`;
}

/**
 * The throughput line of a plan: what the vCPUs can feed (measured CPU per image) beside what the GPUs are
 * expected to embed (datasheet estimate), and which of the two bounds the size.
 */
export function describeFeed(plan: WorkerPlan, workerCpuMsPerImage?: number): string {
  const r = plan.resources;
  const gpu = r.gpus[0];
  const vm = (plan.size ? findVmSize(plan.size) : undefined) ?? {
    vcpu: r.vcpus,
    gpuModel: gpu?.name ?? null,
    gpuCount: r.gpus.length,
  };
  const f = feedEstimate(vm, workerCpuMsPerImage === undefined ? {} : { workerCpuMsPerImage });
  const measured =
    workerCpuMsPerImage === undefined
      ? `${MEASURED_WORKER_CPU.msPerImage} ms worker CPU per image, measured ${MEASURED_WORKER_CPU.measuredOn} ` +
        `with \`${MEASURED_WORKER_CPU.command}\` (${MEASURED_WORKER_CPU.image})`
      : `${workerCpuMsPerImage} ms worker CPU per image (--cpu-ms-per-image)`;
  const lines = [
    `throughput: CPU side feeds at most ~${f.cpuFeedImagesPerSec} img/s (${Math.max(1, vm.vcpu - 1)} vCPUs x 1000 / ${measured})`,
    ...(f.gpuImagesPerSec === null
      ? [
          vm.gpuCount > 0
            ? `  GPU rate unknown: no datasheet figure for ${vm.gpuModel ?? 'this GPU'} in packages/core/src/sku/feed.ts; bench/gpu.sh measures it`
            : '  no GPU: the model itself runs on these vCPUs and bounds the size; `embedpool calibrate` measures it',
        ]
      : [
          `  GPUs expected ~${f.gpuImagesPerSec} img/s (estimate: ${f.gpuSource}; bench/gpu.sh measures it)`,
          `  bound: ${f.bound === 'cpu' ? 'CPU (decode and pipeline)' : 'GPU (model)'}, ~${f.imagesPerSec} img/s`,
        ]),
  ];
  return `${lines.join('\n')}\n`;
}

/** The human-readable plan `sku <size>`, `sku --detect` and `calibrate` print. */
export function describePlan(plan: WorkerPlan): string {
  const r = plan.resources;
  const gpus = r.gpus.length === 0 ? 'no GPU' : `${r.gpus.length} GPU(s) x ${r.gpus[0]!.memoryGib} GiB`;
  const lines = [
    `${plan.size ?? 'this machine'}: ${r.vcpus} vCPUs (${plan.physicalCores} cores), ${r.memoryGib.toFixed(1)} GiB, ${gpus}`,
    `provider ${plan.provider}, model ${plan.modelVariant}, ${plan.processes.length} worker process(es)` +
      (plan.provider === 'cuda'
        ? ` (CUDA devices ${plan.processes.map((p) => p.cudaDeviceId).join(', ')})`
        : ''),
    `per process: ${plan.inferenceThreads} session(s) x ${plan.intraOpThreads} intra-op threads, ` +
      `${plan.decodeThreads} decode threads, batch ${plan.batchSize} (wait ${plan.batchWaitMs} ms), ` +
      `prefetch ${plan.workerConcurrency} jobs, UV_THREADPOOL_SIZE ${plan.uvThreadpoolSize}`,
    `memory: ~${gib(plan.memory.host.totalBytes)} of ${gib(plan.memory.host.budgetBytes)} RAM budget` +
      (plan.memory.gpu
        ? `; ~${gib(plan.memory.gpu.perDeviceBytes)} of ${gib(plan.memory.gpu.budgetBytes)} per GPU`
        : ''),
    ...plan.notes.map((n) => `  - ${n}`),
    ...plan.warnings.map((w) => `warning: ${w}`),
  ];
  return `${lines.join('\n')}\n`;
}

function envBlock(plan: WorkerPlan): string {
  return planToEnv(plan)
    .map((env, i) =>
      formatEnvFile(env, plan.processes.length > 1 ? [`worker process ${i} (GPU ${i})`] : []).trimEnd(),
    )
    .join('\n\n');
}

/** GPU sizes: which side bounds them and at about how many images/s (see describeFeed). */
function boundCell(vm: Parameters<typeof feedEstimate>[0]): string {
  if (vm.gpuCount === 0) return '-';
  const f = feedEstimate(vm);
  // No datasheet figure (a partial GPU, a model not in feed.ts): only the CPU side is known.
  if (f.gpuImagesPerSec === null) return `cpu feeds ~${f.cpuFeedImagesPerSec}, gpu ?`;
  return `${f.bound} ~${f.imagesPerSec}`;
}

export function listTable(): string {
  const rows = VM_SIZES.map((vm) => {
    try {
      const p = planForSize(vm);
      return [
        vm.size,
        vm.vcpu,
        vm.memoryGib,
        vm.gpuCount === 0 ? '-' : `${vm.gpuCount}x ${vm.gpuModel ?? 'GPU'}`,
        p.provider,
        p.processes.length,
        p.batchSize,
        threadsCell(p),
        boundCell(vm),
        p.warnings.join('; '),
      ];
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      return [
        vm.size,
        vm.vcpu,
        vm.memoryGib,
        String(vm.gpuCount),
        '-',
        0,
        0,
        '-',
        '-',
        `no plan: ${message}`,
      ];
    }
  });
  return table(
    ['size', 'vcpu', 'mem_gib', 'gpus', 'provider', 'procs', 'batch', 'threads', 'bound img/s', 'warnings'],
    rows,
  );
}

/** Env file paths for the plan: `out` itself for one process, `<name>-gpu<i><ext>` for several. */
export function envFilePaths(out: string, processes: number): string[] {
  if (processes === 1) return [out];
  const ext = extname(out);
  const stem = basename(out, ext);
  return Array.from({ length: processes }, (_, i) => join(dirname(out), `${stem}-gpu${i}${ext}`));
}

export async function writeEnvFiles(plan: WorkerPlan, out: string, comments: string[]): Promise<string[]> {
  const paths = envFilePaths(resolve(out), plan.processes.length);
  await mkdir(dirname(paths[0]!), { recursive: true });
  const envs = planToEnv(plan);
  await Promise.all(paths.map((p, i) => writeFile(p, formatEnvFile(envs[i]!, comments))));
  return paths;
}

interface SkuFlags {
  list?: boolean;
  detect?: boolean;
  json?: boolean;
  batchSize?: number;
  int8?: boolean;
  cpuMsPerImage?: number;
}

interface CalibrateFlags {
  model?: string;
  batchSizes?: number[];
  threads?: number[];
  seconds: number;
  writeEnv?: string;
  json?: boolean;
  int8?: boolean;
}

function progressLine(e: CalibrateEvent): string {
  switch (e.type) {
    case 'model':
      return e.built
        ? `built random DINOv2 ViT-B/14 in ${e.seconds.toFixed(1)} s: ${e.path}`
        : `using cached random DINOv2 ViT-B/14: ${e.path}`;
    case 'load':
      return `loaded ${e.sessions} session(s) x ${e.intraOpThreads} intra-op threads in ${e.seconds.toFixed(1)} s`;
    case 'row':
      return (
        `  intra ${e.row.intraOpThreads} x ${e.row.sessions} session(s), batch ${e.row.batchSize}: ` +
        `${e.row.imagesPerSecond.toFixed(2)} images/s`
      );
  }
}

export function calibrationTable(r: CalibrationResult): string {
  return table(
    ['intra_op', 'sessions', 'batch', 'runs', 'images/s', 'ms/batch'],
    r.rows.map((x) => [
      x.intraOpThreads,
      x.sessions,
      x.batchSize,
      x.runs,
      Number(x.imagesPerSecond.toFixed(2)),
      Math.round(x.msPerBatch),
    ]),
  );
}

export function registerSkuCommands(program: Command): void {
  program
    .command('sku')
    .description('worker plans for Azure VM sizes: processes, threads, batch and memory check')
    .argument('[size]', 'an Azure VM size from the catalogue, e.g. Standard_D4as_v4 (case-insensitive)')
    .option('--list', 'a table of every size in the catalogue and its plan')
    .option(
      '--detect',
      'plan for this machine (WORKER_SKU, Azure metadata on Azure VMs, else local detection)',
    )
    .option(
      '--batch-size <n>',
      'plan with this batch size (refused when it does not fit memory)',
      positiveInt,
    )
    .option('--int8', 'plan for an int8 model (embedpool model quantize): CPU sizes only')
    .option('--json', 'print the plan (with its env) as JSON')
    .option(
      '--cpu-ms-per-image <ms>',
      `worker CPU per image for the throughput bound (default ${MEASURED_WORKER_CPU.msPerImage}, the pipeline bench's)`,
      positiveNumber,
    )
    .action(runAction(showPlan));

  program
    .command('calibrate')
    .description('measure inference throughput on this machine at several batch sizes and thread counts')
    .option(
      '--model <model.onnx>',
      'model to measure; default: a full-size random DINOv2 ViT-B/14 in the cache',
    )
    .option(
      '--batch-sizes <list>',
      `batch sizes to measure (default ${DEFAULT_CALIBRATE_BATCH_SIZES.join(',')})`,
      intList,
    )
    .option(
      '--threads <list>',
      "intra-op thread counts per session (default: the plan's and half of it)",
      intList,
    )
    .option(
      '--seconds <n>',
      'measuring time per batch size and thread count',
      positiveNumber,
      DEFAULT_CALIBRATE_SECONDS,
    )
    .option('--write-env <file>', 'write the best plan as an env file (one per GPU process: <file>-gpu<i>)')
    .option(
      '--int8',
      'measure the int8 model: the random model quantized (cached), or --model when that is int8 already',
    )
    .option('--json', 'print the measurements and plan as JSON')
    .action(runAction(runCalibrate));
}

/** `embedpool sku`: one size's plan (or --list, or --detect for this machine), with its feed bound. */
async function showPlan(size: string | undefined, flags: SkuFlags): Promise<number> {
  if (flags.list) {
    if (size !== undefined) throw new EmbedpoolError('BAD_REQUEST', '--list takes no size');
    if (flags.json) {
      const plans = VM_SIZES.map((vm) => ({ vm, plan: planForSize(vm) }));
      process.stdout.write(`${JSON.stringify(plans, null, 2)}\n`);
    } else process.stdout.write(listTable());
    return 0;
  }
  const opts = {
    ...(flags.batchSize === undefined ? {} : { batchSize: flags.batchSize }),
    // int8 runs on CPU: on a GPU size it plans the CPU worker.
    ...(flags.int8 ? { modelVariant: 'int8' as const, provider: 'cpu' as const } : {}),
  };
  let plan: WorkerPlan;
  let source: string | undefined;
  if (flags.detect) {
    if (size !== undefined) throw new EmbedpoolError('BAD_REQUEST', '--detect takes no size');
    const detected = await detectSku({ planOptions: opts });
    plan = detected.plan;
    source = detected.source;
  } else if (size !== undefined) {
    plan = planForSize(size, opts);
  } else {
    throw new EmbedpoolError('BAD_REQUEST', 'give a size, --list or --detect (see embedpool sku --help)');
  }
  if (flags.json) {
    const out = {
      ...(source ? { source } : {}),
      plan,
      env: planToEnv(plan),
      throughput: feedEstimate(
        (plan.size ? findVmSize(plan.size) : undefined) ?? {
          vcpu: plan.resources.vcpus,
          gpuModel: plan.resources.gpus[0]?.name ?? null,
          gpuCount: plan.resources.gpus.length,
        },
        flags.cpuMsPerImage === undefined ? {} : { workerCpuMsPerImage: flags.cpuMsPerImage },
      ),
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    if (source) process.stdout.write(`detected from: ${source}\n`);
    process.stdout.write(
      `${describePlan(plan)}${describeFeed(plan, flags.cpuMsPerImage)}\n${envBlock(plan)}\n`,
    );
  }
  return 0;
}

/** `embedpool calibrate`: measure this machine, print (or write) the best plan. */
async function runCalibrate(flags: CalibrateFlags): Promise<number> {
  disableOrtTelemetry();
  if (flags.model !== undefined) await requireModelFile(flags.model);
  const progress = (e: CalibrateEvent) => process.stderr.write(`${progressLine(e)}\n`);
  const r = await calibrate({
    ...(flags.model === undefined ? {} : { modelPath: flags.model }),
    ...(flags.batchSizes ? { batchSizes: flags.batchSizes } : {}),
    ...(flags.threads ? { threads: flags.threads } : {}),
    ...(flags.int8 ? { int8: true, provider: 'cpu' as const } : {}),
    seconds: flags.seconds,
    onProgress: progress,
  });
  let written: string[] = [];
  if (flags.writeEnv !== undefined) {
    const b = r.best;
    written = await writeEnvFiles(r.plan, flags.writeEnv, [
      `embedpool calibrate ${new Date().toISOString()}: ${b.imagesPerSecond.toFixed(2)} images/s ` +
        `(intra-op ${b.intraOpThreads} x ${b.sessions} session(s), batch ${b.batchSize}, ${r.provider})`,
      `model ${r.modelPath} (${r.modelVariant})`,
    ]);
  }
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ ...r, env: planToEnv(r.plan), written }, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(calibrationTable(r));
  const b = r.best;
  process.stdout.write(
    `\nbest: ${b.imagesPerSecond.toFixed(2)} images/s at intra-op ${b.intraOpThreads} x ` +
      `${b.sessions} session(s), batch ${b.batchSize} (${r.provider}; ${r.totalSeconds.toFixed(0)} s in all)\n\n`,
  );
  process.stdout.write(`${describePlan(r.plan)}\n${envBlock(r.plan)}\n`);
  for (const p of written) process.stderr.write(`wrote ${p}\n`);
  return 0;
}
