import { performance } from 'node:perf_hooks';
import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { EmbedpoolError, toEmbedpoolError } from '../errors';
import { float16ToFloat32, float32ToFloat16 } from '../model/half';
import { type ModelInfo, readModelInfo } from './model-info';
import type { FromThread, InitMessage, RunMessage, ToThread } from './protocol';
import { type ExecutionProvider, sessionOptions } from './session-options';

// onnxruntime-node's run() blocks the thread it is called on; this thread exists so that the blocking
// happens here and not on the event loop that serves HTTP, renews queue locks and answers metrics.

const port = parentPort;
if (!port) throw new Error('inference-thread must run in a worker thread');

let session: ort.InferenceSession | undefined;
let info: ModelInfo | undefined;

function reply(msg: FromThread, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(msg, transfer);
}

async function createSession(
  msg: InitMessage,
): Promise<{ provider: ExecutionProvider; fallbackReason?: string }> {
  const wanted = msg.runtime.executionProvider;
  try {
    session = await ort.InferenceSession.create(msg.modelPath, sessionOptions(msg.runtime, wanted));
    return { provider: wanted };
  } catch (err) {
    if (wanted === 'cpu') throw err;
    // No automatic fallback in onnxruntime-node: fall back on purpose and report why.
    const reason = err instanceof Error ? err.message : String(err);
    session = await ort.InferenceSession.create(msg.modelPath, sessionOptions(msg.runtime, 'cpu'));
    return { provider: 'cpu', fallbackReason: reason };
  }
}

async function init(msg: InitMessage): Promise<void> {
  try {
    const started = await createSession(msg);
    info = readModelInfo(session!);
    reply({ type: 'ready', info, ...started });
  } catch (err) {
    const e = toEmbedpoolError(err, 'MODEL_INVALID');
    reply({
      type: 'error',
      id: null,
      error: { code: e.code, message: `cannot load ${msg.modelPath}: ${e.message}` },
    });
  }
}

function extract(output: ort.Tensor, count: number): { embeddings: Float32Array; dim: number } {
  const dims = output.dims;
  const dim = dims[dims.length - 1]!;
  const raw = output.data;
  const data = output.type === 'float16' ? float16ToFloat32(raw as Uint16Array) : (raw as Float32Array);
  if (info!.embeddingFrom === 'pooler_output') {
    return { embeddings: data.slice(0, count * dim), dim };
  }
  // last_hidden_state [batch, tokens, dim]: the CLS token is row 0 of each image.
  const tokens = dims[1]!;
  const out = new Float32Array(count * dim);
  for (let i = 0; i < count; i++) out.set(data.subarray(i * tokens * dim, i * tokens * dim + dim), i * dim);
  return { embeddings: out, dim };
}

async function run(msg: RunMessage): Promise<void> {
  const { id, input, count, height, width } = msg;
  try {
    if (!session || !info) throw new EmbedpoolError('ENGINE_CLOSED', 'model not loaded');
    const view = input.subarray(0, count * 3 * height * width);
    const data = info.inputType === 'float16' ? float32ToFloat16(view) : view;
    const tensor = new ort.Tensor(info.inputType, data, [count, 3, height, width]);
    const t0 = performance.now();
    const outputs = await session.run({ [info.inputName]: tensor }, [info.outputName]);
    const inferMs = performance.now() - t0;
    const { embeddings, dim } = extract(outputs[info.outputName]!, count);
    reply({ type: 'result', id, input, embeddings, dim, inferMs }, [
      input.buffer as ArrayBuffer,
      embeddings.buffer as ArrayBuffer,
    ]);
  } catch (err) {
    const e = toEmbedpoolError(err, 'INFERENCE_FAILED');
    reply({ type: 'error', id, input, error: { code: e.code, message: e.message } }, [
      input.buffer as ArrayBuffer,
    ]);
  }
}

port.on('message', (msg: ToThread) => {
  if (msg.type === 'init') void init(msg);
  else void run(msg);
});
