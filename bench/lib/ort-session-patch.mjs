// Bench-only preload (`--import`), never part of the service: merges onnxruntime session options the
// Engine does not expose into every session this process creates, in every thread (Node runs --import
// preloads in worker threads too), so an A/B variant can measure them end to end before anyone changes
// packages/core/src/engine/session-options.ts. Read from the environment:
//   EMBEDPOOL_BENCH_ORT_CONFIG   session config entries, `key=value;key=value`
//                                (e.g. session.intra_op.allow_spinning=0;session.disable_prepacking=1)
//   EMBEDPOOL_BENCH_ORT_CPU_ARENA  0 or 1: SessionOptions.enableCpuMemArena
import { threadId } from 'node:worker_threads';
import ort from 'onnxruntime-node';

const entries = (process.env.EMBEDPOOL_BENCH_ORT_CONFIG ?? '')
  .split(';')
  .map((s) => s.trim())
  .filter(Boolean)
  .map((s) => s.split('='));
const arena = process.env.EMBEDPOOL_BENCH_ORT_CPU_ARENA;

function nested(pairs) {
  const out = {};
  for (const [key, value] of pairs) {
    const parts = key.split('.');
    let node = out;
    for (const p of parts.slice(0, -1)) {
      node[p] ??= {};
      node = node[p];
    }
    node[parts.at(-1)] = value;
  }
  return out;
}

if (entries.length > 0 || arena !== undefined) {
  const original = ort.InferenceSession.create.bind(ort.InferenceSession);
  ort.InferenceSession.create = (path, options = {}, ...rest) => {
    const patched = {
      ...options,
      extra: { ...(options.extra ?? {}), ...nested(entries) },
      ...(arena !== undefined ? { enableCpuMemArena: arena === '1' } : {}),
    };
    if (threadId !== 0)
      process.stderr.write(
        `[bench ort-patch] thread ${threadId}: ${JSON.stringify(patched.extra)} arena=${arena ?? 'default'}\n`,
      );
    return original(path, patched, ...rest);
  };
}
