import { loadPreprocessorConfig } from '@embedpool/core/preprocess';
import {
  compareSessions,
  DEFAULT_HOLDOUT_DIR,
  loadImageDir,
  openSession,
  readModelPrecision,
  sessionInputSize,
} from '@embedpool/core/quantize';
import type { Command } from 'commander';
import {
  disableOrtTelemetry,
  EXIT_FAILURE,
  EXIT_OK,
  nonNegativeInt,
  requireModelFile,
  runAction,
} from './cli-support';
import { agreementLines, cosineArg } from './model-quantize';

interface CompareFlags {
  images?: string;
  minCosine?: number;
  preprocessorConfig?: string;
  threads: number;
  json?: boolean;
}

export function registerModelCompareCommand(model: Command): void {
  model
    .command('compare')
    .description(
      'embed the same photos with two models and say how far apart the vectors are (min / mean cosine, ' +
        'norm ratio, worst image): check a quantized model on your own data',
    )
    .argument('<a.onnx>', 'the reference model (e.g. float32)')
    .argument('<b.onnx>', 'the candidate (e.g. its int8 copy)')
    .option('--images <dir>', 'photos to compare on (default: the shipped held-out photos)')
    .option('--min-cosine <x>', 'exit 1 when any image scores below this', cosineArg)
    .option('--preprocessor-config <file>', 'Hugging Face preprocessor_config.json (default: dinov2-base)')
    .option('--threads <n>', 'onnxruntime intra-op threads (0: one per core)', nonNegativeInt, 0)
    .option('--json', 'machine-readable result on stdout')
    .addHelpText('after', '\nExit status: 0 compared (and above --min-cosine when given); 1 otherwise.\n')
    .action(
      runAction(async (pathA: string, pathB: string, flags: CompareFlags) => {
        disableOrtTelemetry();
        await requireModelFile(pathA);
        await requireModelFile(pathB);
        const preprocessor = flags.preprocessorConfig
          ? await loadPreprocessorConfig(flags.preprocessorConfig)
          : undefined;
        const a = await openSession(pathA, { threads: flags.threads });
        try {
          const b = await openSession(pathB, { threads: flags.threads });
          try {
            const dir = flags.images ?? DEFAULT_HOLDOUT_DIR;
            const images = await loadImageDir(dir, {
              size: sessionInputSize(a),
              ...(preprocessor ? { preprocessor } : {}),
            });
            const result = await compareSessions(a, b, images);
            const precision = [await readModelPrecision(pathA), await readModelPrecision(pathB)];
            const ok = flags.minCosine === undefined || result.minCosine >= flags.minCosine;
            if (flags.json) {
              const report = {
                a: { path: pathA, precision: precision[0]!.precision },
                b: { path: pathB, precision: precision[1]!.precision },
                ...result,
                passed: ok,
              };
              process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
            } else {
              const width = Math.max(...result.perImage.map((r) => r.name.length));
              process.stdout.write(
                [
                  `a: ${pathA} (${precision[0]!.precision})`,
                  `b: ${pathB} (${precision[1]!.precision})`,
                  `photos: ${dir}`,
                  ...agreementLines(result),
                  ...result.perImage.map(
                    (r) =>
                      `    ${r.name.padEnd(width)}  cosine ${r.cosine.toFixed(4)}  norm ratio ${r.normRatio.toFixed(4)}`,
                  ),
                  ...(ok ? [] : [`BELOW --min-cosine ${flags.minCosine}`]),
                ].join('\n') + '\n',
              );
            }
            return ok ? EXIT_OK : EXIT_FAILURE;
          } finally {
            await b.release();
          }
        } finally {
          await a.release();
        }
      }),
    );
}
