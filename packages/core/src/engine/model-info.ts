import type { InferenceSession } from 'onnxruntime-node';
import { EmbedpoolError } from '../errors';

export type TensorElementType = 'float32' | 'float16';

/** What the engine needs to know about a model, read from the session rather than assumed. */
export interface ModelInfo {
  inputName: string;
  inputType: TensorElementType;
  /** null when the batch dimension is symbolic (dynamic); otherwise the only batch size the model takes. */
  fixedBatch: number | null;
  /** null when the model leaves the spatial size symbolic. */
  height: number | null;
  width: number | null;
  /** The output the embedding comes from: `pooler_output` when present, else row 0 of `last_hidden_state`. */
  outputName: string;
  outputType: TensorElementType;
  embeddingFrom: 'pooler_output' | 'cls_token';
  /** null until the first run when the model leaves the hidden size symbolic. */
  dim: number | null;
}

type Meta = InferenceSession.ValueMetadata;
type Dim = number | string;

function tensorShape(meta: Meta): readonly Dim[] {
  if (!meta.isTensor) throw new EmbedpoolError('MODEL_INVALID', `${meta.name} is not a tensor`);
  return meta.shape;
}

function elementType(meta: Meta): TensorElementType {
  if (!meta.isTensor) throw new EmbedpoolError('MODEL_INVALID', `${meta.name} is not a tensor`);
  if (meta.type === 'float32' || meta.type === 'float16') return meta.type;
  throw new EmbedpoolError(
    'MODEL_INVALID',
    `${meta.name} has element type ${meta.type}; float32 or float16 expected`,
  );
}

const fixed = (d: Dim | undefined): number | null => (typeof d === 'number' && d > 0 ? d : null);

export function readModelInfo(session: {
  inputMetadata: readonly Meta[];
  outputMetadata: readonly Meta[];
}): ModelInfo {
  const input = session.inputMetadata.find((m) => m.isTensor && tensorShape(m).length === 4);
  if (!input || session.inputMetadata.length !== 1) {
    throw new EmbedpoolError(
      'MODEL_INVALID',
      `expected one image input [batch,3,H,W]; model has ${session.inputMetadata.map((m) => m.name).join(', ') || 'none'}`,
    );
  }
  const inShape = tensorShape(input);
  if (fixed(inShape[1]) !== null && inShape[1] !== 3) {
    throw new EmbedpoolError('MODEL_INVALID', `input ${input.name} has ${inShape[1]} channels; 3 expected`);
  }
  const pooler = session.outputMetadata.find((m) => m.name === 'pooler_output');
  const hidden = session.outputMetadata.find((m) => m.name === 'last_hidden_state');
  const output = pooler ?? hidden;
  if (!output) {
    throw new EmbedpoolError(
      'MODEL_INVALID',
      `model has neither pooler_output nor last_hidden_state (outputs: ${session.outputMetadata.map((m) => m.name).join(', ')})`,
    );
  }
  const outShape = tensorShape(output);
  return {
    inputName: input.name,
    inputType: elementType(input),
    fixedBatch: fixed(inShape[0]),
    height: fixed(inShape[2]),
    width: fixed(inShape[3]),
    outputName: output.name,
    outputType: elementType(output),
    embeddingFrom: pooler ? 'pooler_output' : 'cls_token',
    dim: fixed(outShape[outShape.length - 1]),
  };
}
