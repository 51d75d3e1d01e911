import { DINOV2_PREPROCESSOR_CONFIG } from '@embedpool/core/preprocess';
import { describe, expect, it } from 'vitest';
import { modelPrecision } from './worker';

const source = (path: string, precision?: string) => ({
  path,
  modelId: 'm',
  randomWeights: false,
  preprocessor: DINOV2_PREPROCESSOR_CONFIG,
  ...(precision ? { precision } : {}),
});

describe('modelPrecision (what /v1/models reports)', () => {
  it('takes the source’s word, then float16 inputs or an fp16 file name, else fp32', () => {
    expect(modelPrecision(source('/m/model.onnx', 'int8'), 'float32')).toBe('int8');
    expect(modelPrecision(source('/m/onnx/model_fp16.onnx'), 'float32')).toBe('fp16');
    expect(modelPrecision(source('/m/model.onnx'), 'float16')).toBe('fp16');
    expect(modelPrecision(source('/m/model.onnx'), 'float32')).toBe('fp32');
    expect(modelPrecision(source('/m/fp16ish-model.onnx'), 'float32')).toBe('fp32');
  });
});
