import { writeFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { buildDinov2, DINOV2_BASE_CONFIG, parseDinov2Config } from '@embedpool/core/model';
import { outlierDinov2Weights, quantizeModel } from '@embedpool/core/quantize';
const cfg = parseDinov2Config({ ...DINOV2_BASE_CONFIG, initializer_range: 0.05 });
let t = performance.now();
writeFileSync('/tmp/i17/base-outlier.onnx', buildDinov2({ config: cfg, weights: outlierDinov2Weights(cfg), imageSize: 224 }).model);
console.log('built', ((performance.now() - t) / 1000).toFixed(1));
for (const method of ['naive', 'smoothquant'] as const) {
  t = performance.now();
  const r = await quantizeModel({ input: '/tmp/i17/base-outlier.onnx', method, maxFloatFallback: 0, threads: 2, log: (l) => console.log('  ', l) });
  console.log(method, 'gate', r.gate.minCosine.toFixed(4), r.gate.meanCosine.toFixed(4), r.gate.minNormRatio.toFixed(3), r.gate.maxNormRatio.toFixed(3), 'calib', r.calibration.minCosine.toFixed(4), ((performance.now() - t) / 1000).toFixed(1), 's', r.model.length);
  writeFileSync(`/tmp/i17/base-${method}.onnx`, r.model);
}
for (const p of ['/tmp/i17/base-outlier.onnx', '/tmp/i17/base-smoothquant.onnx']) {
  const s = await ort.InferenceSession.create(p, { intraOpNumThreads: 2, interOpNumThreads: 1 });
  const x = new ort.Tensor('float32', new Float32Array(3 * 224 * 224).fill(0.3), [1, 3, 224, 224]);
  await s.run({ pixel_values: x });
  const ms: number[] = [];
  for (let i = 0; i < 6; i++) { const t0 = performance.now(); await s.run({ pixel_values: x }, ['pooler_output']); ms.push(performance.now() - t0); }
  ms.sort((a, b) => a - b);
  console.log(p, 'median ms', ms[3]!.toFixed(0), 'img/s', (1000 / ms[3]!).toFixed(2));
}
