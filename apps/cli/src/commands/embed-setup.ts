import type { Engine } from '@embedpool/core/engine';
import { EmbedpoolError } from '@embedpool/core/errors';
import {
  DINOV2_PREPROCESSOR_CONFIG,
  fixedOutputSize,
  loadPreprocessorConfig,
  type PreprocessorConfig,
} from '@embedpool/core/preprocess';
import cliProgress from 'cli-progress';

/** The preprocessor config and the tensor size it produces, which is also the batcher's size. */
export async function loadInputShape(
  source: string | PreprocessorConfig | undefined,
): Promise<{ config: PreprocessorConfig; height: number; width: number }> {
  const config =
    source === undefined
      ? DINOV2_PREPROCESSOR_CONFIG
      : typeof source === 'string'
        ? await loadPreprocessorConfig(source)
        : source;
  const size = fixedOutputSize(config);
  // Batching needs one size for every image; a config that keeps each image's own size cannot batch.
  if (!size) {
    throw new EmbedpoolError(
      'CONFIG_INVALID',
      'the preprocessor config must give a fixed input size (do_center_crop, or size with height and width) to batch images',
    );
  }
  return { config, height: size.height, width: size.width };
}

/** A model fixed to another size would fail every batch; better one clear error before any file is read. */
export function checkModelInputSize(engine: Engine, height: number, width: number): void {
  const info = engine.info;
  if ((info.height !== null && info.height !== height) || (info.width !== null && info.width !== width)) {
    throw new EmbedpoolError(
      'MODEL_INVALID',
      `the model takes ${info.height}x${info.width} images but the preprocessor config makes ${height}x${width}`,
    );
  }
}

/**
 * A bar on a terminal only: in a pipeline or a log, stderr should carry errors, not redraws; and not
 * when the result lines themselves go to the same terminal, where the redraws would garble them.
 */
export function progressBar(
  total: number,
  enabled: boolean,
  toStdout: boolean,
): cliProgress.SingleBar | undefined {
  if (!enabled || !process.stderr.isTTY || (toStdout && process.stdout.isTTY)) return undefined;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: 'embed [{bar}] {value}/{total} | {failed} failed | ETA {eta_formatted}',
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { failed: 0 });
  return bar;
}
