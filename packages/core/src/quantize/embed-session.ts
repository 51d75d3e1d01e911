import * as ort from 'onnxruntime-node';
import { readModelInfo } from '../engine/model-info';
import { EmbedpoolError, toEmbedpoolError } from '../errors';
import { float16ToFloat32, float32ToFloat16 } from '../model/half';

// onnxruntime-node's Linux telemetry scans /proc/self/cmdline and would try uploads (see engine.ts).
process.env.ORT_DISABLE_TELEMETRY ??= '1';

export interface SessionOptions {
  /** Intra-op threads; 0 lets onnxruntime pick one per core. */
  threads?: number;
}

/** One CPU session on a model held in memory or a file. */
export async function openSession(
  model: Uint8Array | string,
  opts: SessionOptions = {},
): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    intraOpNumThreads: opts.threads ?? 0,
    interOpNumThreads: 1,
    logSeverityLevel: 3,
  };
  try {
    return typeof model === 'string'
      ? await ort.InferenceSession.create(model, options)
      : await ort.InferenceSession.create(model, options);
  } catch (err) {
    throw new EmbedpoolError('MODEL_INVALID', `cannot load the model: ${toEmbedpoolError(err).message}`, {
      cause: err,
    });
  }
}

/** The image size a session takes (fixed in the graph, else `fallback`). */
export function sessionInputSize(session: ort.InferenceSession, fallback = 224): number {
  const info = readModelInfo(session);
  return info.height ?? info.width ?? fallback;
}

/**
 * The embedding of each image, as the engine takes it: `pooler_output`, else the CLS row of
 * `last_hidden_state`. One image per run: calibration sets are small and batch 1 keeps memory flat.
 */
export async function embedAll(
  session: ort.InferenceSession,
  images: Float32Array[],
): Promise<Float32Array[]> {
  const info = readModelInfo(session);
  const out: Float32Array[] = [];
  for (const pixels of images) {
    const size = Math.round(Math.sqrt(pixels.length / 3));
    // fp16 exports may take and give half floats; compare works across precisions.
    const input =
      info.inputType === 'float16'
        ? new ort.Tensor('float16', float32ToFloat16(pixels), [1, 3, size, size])
        : new ort.Tensor('float32', pixels, [1, 3, size, size]);
    const result = await session.run({ [info.inputName]: input }, [info.outputName]);
    const t = result[info.outputName]!;
    const dim = t.dims[t.dims.length - 1]!;
    const data = t.type === 'float16' ? float16ToFloat32(t.data as Uint16Array) : (t.data as Float32Array);
    // pooler_output [1, dim] or last_hidden_state [1, tokens, dim]: either way the first row is the embedding.
    out.push(Float32Array.from(data.subarray(0, dim)));
  }
  return out;
}
