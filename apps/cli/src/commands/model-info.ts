import { resolve } from 'node:path';
import { type ModelInfo, readModelInfo } from '@embedpool/core/engine';
import { EmbedpoolError, toEmbedpoolError } from '@embedpool/core/errors';
import { readModelIdentity } from '@embedpool/core/model-identity';
import { type ModelPrecisionInfo, readModelPrecision } from '@embedpool/core/precision';
import type { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { disableOrtTelemetry, EXIT_FAILURE, EXIT_OK, requireModelFile, runAction } from './cli-support';

interface TensorSummary {
  name: string;
  /** Element type, or `non-tensor` (sequences, maps). */
  type: string;
  /** Symbolic dimensions (`batch_size`) as strings. */
  shape: (number | string)[];
}

export interface ModelInfoReport {
  path: string;
  bytes: number;
  inputs: TensorSummary[];
  outputs: TensorSummary[];
  /** null when the model is not one the engine can embed with; `problem` says why. */
  embedding: {
    output: string;
    from: ModelInfo['embeddingFrom'];
    dim: number | null;
    inputSize: { height: number | null; width: number | null };
    fixedBatch: number | null;
  } | null;
  dim: number | null;
  /** float32, float16 or int8, with the quantization record an `embedpool model quantize` output carries. */
  precision: ModelPrecisionInfo['precision'] | 'unknown';
  quantization?: Record<string, string>;
  /** The id recorded beside the file (`<file>.identity.json`), null when there is none that fits it. */
  id: string | null;
  problem?: { code: string; message: string };
}

function summarize(meta: readonly ort.InferenceSession.ValueMetadata[]): TensorSummary[] {
  return meta.map((m) =>
    m.isTensor
      ? { name: m.name, type: m.type, shape: [...m.shape] }
      : { name: m.name, type: 'non-tensor', shape: [] },
  );
}

export async function inspectModel(path: string): Promise<ModelInfoReport> {
  const bytes = await requireModelFile(path);
  let session: ort.InferenceSession;
  disableOrtTelemetry();
  try {
    // Only the signature is wanted: skipping graph optimisation makes loading a large model quick.
    session = await ort.InferenceSession.create(path, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'disabled',
      logSeverityLevel: 3,
    });
  } catch (err) {
    throw new EmbedpoolError('MODEL_INVALID', `cannot load ${path}: ${toEmbedpoolError(err).message}`, {
      cause: err,
    });
  }
  try {
    const report: ModelInfoReport = {
      path: resolve(path),
      bytes,
      inputs: summarize(session.inputMetadata),
      outputs: summarize(session.outputMetadata),
      embedding: null,
      dim: null,
      precision: 'unknown',
      id: null,
    };
    const precision = await readModelPrecision(path).catch(() => undefined);
    if (precision) {
      report.precision = precision.precision;
      const q = Object.entries(precision.metadata).filter(
        ([k]) => k.startsWith('embedpool.quantization.') || k.startsWith('embedpool.source.'),
      );
      if (q.length > 0) report.quantization = Object.fromEntries(q);
    }
    const identity = await readModelIdentity(path);
    if (identity.status === 'ok') report.id = identity.identity.id;
    try {
      const info = readModelInfo(session);
      report.embedding = {
        output: info.outputName,
        from: info.embeddingFrom,
        dim: info.dim,
        inputSize: { height: info.height, width: info.width },
        fixedBatch: info.fixedBatch,
      };
      report.dim = info.dim;
    } catch (err) {
      report.problem = toEmbedpoolError(err).toJSON();
    }
    return report;
  } finally {
    await session.release();
  }
}

const shape = (s: (number | string)[]) => `[${s.join(', ')}]`;

function formatReport(r: ModelInfoReport): string {
  const rows = (list: TensorSummary[]) => {
    const width = Math.max(...list.map((t) => t.name.length));
    return list.map((t) => `  ${t.name.padEnd(width)}  ${t.type.padEnd(7)}  ${shape(t.shape)}`);
  };
  const lines = [
    `file:      ${r.path} (${r.bytes} bytes)`,
    `id:        ${r.id ?? 'none recorded (workers in production refuse it unless MODEL_ID is set)'}`,
    'inputs:',
    ...rows(r.inputs),
    'outputs:',
    ...rows(r.outputs),
  ];
  const q = r.quantization;
  lines.push(
    `precision: ${r.precision}` +
      (q
        ? ` (${q['embedpool.quantization.method']}; held-out min cosine ${q['embedpool.quantization.min_cosine']}; ` +
          `from ${q['embedpool.source.id']} sha256 ${q['embedpool.source.sha256']})`
        : ''),
  );
  const e = r.embedding;
  if (e) {
    const from = e.from === 'cls_token' ? `${e.output} (CLS token)` : e.output;
    const size = `${e.inputSize.height ?? '?'}x${e.inputSize.width ?? '?'}`;
    lines.push(
      `embedding: ${from}, dim ${e.dim ?? 'unknown until the first run'}`,
      `images:    ${size}, batch ${e.fixedBatch ?? 'dynamic'}`,
    );
  } else {
    lines.push(`embedding: not usable: ${r.problem?.message} (${r.problem?.code})`);
  }
  return `${lines.join('\n')}\n`;
}

export function registerModelInfoCommand(model: Command): void {
  model
    .command('info')
    .description("show a model file's inputs, outputs and the embedding the engine would use")
    .argument('<file.onnx>', 'ONNX model')
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExit status: 0 usable for embedding, 1 missing, unreadable or not usable.\n')
    .action(
      runAction(async (path: string, opts: { json?: boolean }) => {
        const report = await inspectModel(path);
        process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
        return report.embedding ? EXIT_OK : EXIT_FAILURE;
      }),
    );
}
