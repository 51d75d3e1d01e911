import { EmbedpoolError } from '../errors';

/** A size name the catalogue does not hold (`WORKER_SKU`, `embedpool sku <size>`). */
export class UnknownSkuError extends EmbedpoolError {
  readonly size: string;
  readonly knownSizes: readonly string[];
  /** The known names closest to `size`, closest first. */
  readonly nearest: readonly string[];

  constructor(size: string, knownSizes: readonly string[], nearest: readonly string[]) {
    super(
      'CONFIG_INVALID',
      `unknown Azure VM size "${size}"; nearest known sizes: ${nearest.join(', ')} ` +
        `(\`embedpool sku --list\` shows all ${knownSizes.length})`,
      { details: { size, nearest, knownSizes } },
    );
    this.name = 'UnknownSkuError';
    this.size = size;
    this.knownSizes = knownSizes;
    this.nearest = nearest;
  }
}

export type PlanResource = 'host' | 'gpu';

/** A worker plan whose memory estimate exceeds what the machine has (see `estimateMemory`). */
export class PlanDoesNotFitError extends EmbedpoolError {
  readonly resource: PlanResource;
  readonly requiredBytes: number;
  readonly budgetBytes: number;

  constructor(
    message: string,
    info: { resource: PlanResource; requiredBytes: number; budgetBytes: number; breakdown: object },
  ) {
    super('CONFIG_INVALID', message, { details: { ...info } });
    this.name = 'PlanDoesNotFitError';
    this.resource = info.resource;
    this.requiredBytes = info.requiredBytes;
    this.budgetBytes = info.budgetBytes;
  }
}
