import * as ort from 'onnxruntime-node';
import { readModelInfo } from '../engine/model-info';
import { EmbedpoolError } from '../errors';
import { openSession } from './embed-session';
import { cloneModel, encodeModel, type ModelProto, TensorType } from './onnx-io';

/** Per-channel statistics of one activation over every calibration image and token. */
export interface ChannelStats {
  /** max |x| per channel (last axis). */
  absMax: Float32Array;
  /** How many rows (tokens x images) were seen. */
  rows: number;
}

/**
 * Runs the float32 model on the calibration images with `tensors` added as graph outputs and gathers
 * the per-channel absolute maximum of each: what SmoothQuant needs to move outliers into the weights.
 */
export async function collectActivationStats(
  model: ModelProto,
  tensors: string[],
  images: Float32Array[],
  threads = 0,
): Promise<Map<string, ChannelStats>> {
  if (images.length === 0) throw new EmbedpoolError('CONFIG_INVALID', 'no calibration images');
  const probe = cloneModel(model);
  const graph = probe.graph!;
  const existing = new Set((graph.output ?? []).map((o) => o.name));
  for (const name of tensors) {
    if (existing.has(name)) continue;
    graph.output!.push({ name, type: { tensorType: { elemType: TensorType.FLOAT } } });
  }
  const session = await openSession(encodeModel(probe), { threads });
  const stats = new Map<string, ChannelStats>();
  try {
    const info = readModelInfo(session);
    for (const pixels of images) {
      const size = Math.round(Math.sqrt(pixels.length / 3));
      const out = await session.run(
        { [info.inputName]: new ort.Tensor('float32', pixels, [1, 3, size, size]) },
        tensors,
      );
      for (const name of tensors) {
        const t = out[name]!;
        const channels = t.dims[t.dims.length - 1]!;
        const data = t.data as Float32Array;
        let s = stats.get(name);
        if (!s) {
          s = { absMax: new Float32Array(channels), rows: 0 };
          stats.set(name, s);
        }
        const m = s.absMax;
        for (let i = 0; i < data.length; i += channels) {
          for (let c = 0; c < channels; c++) {
            const v = Math.abs(data[i + c]!);
            if (v > m[c]!) m[c] = v;
          }
        }
        s.rows += data.length / channels;
      }
    }
  } finally {
    await session.release();
  }
  return stats;
}
