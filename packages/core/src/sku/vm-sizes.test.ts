import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { findVmSize, getVmSize, knownSizes, retiredOn } from './catalogue';
import { UnknownSkuError } from './errors';
import { renderVmSizesModule } from './generate-vm-sizes';
import { VM_SIZES } from './vm-sizes';
import { parseVmSizesCsv } from './vm-sizes-csv';

const CSV = join(dirname(fileURLToPath(import.meta.url)), 'azure-vm-sizes.csv');

/** The file's cells, read without the module's parser: the constant is checked against raw text. */
function rawRows(): string[][] {
  const lines = readFileSync(CSV, 'utf8').split('\n').filter(Boolean);
  expect(lines[0]).toBe('size,vcpu,memory_gib,gpu_model,gpu_count,gpu_memory_gib,cpu,avx512,note');
  for (const line of lines) expect(line).not.toContain('"');
  return lines.slice(1).map((l) => l.split(','));
}

describe('VM size catalogue', () => {
  it('holds every row of azure-vm-sizes.csv exactly', () => {
    const rows = rawRows();
    expect(rows).toHaveLength(52);
    expect(VM_SIZES).toHaveLength(rows.length);
    rows.forEach((cells, i) => {
      const vm = VM_SIZES[i]!;
      expect(cells).toHaveLength(9);
      const [size, vcpu, mem, gpuModel, gpuCount, gpuMem, cpu, avx512, note] = cells;
      expect(vm).toEqual({
        size,
        vcpu: Number(vcpu),
        memoryGib: Number(mem),
        gpuModel: gpuModel || null,
        gpuCount: Number(gpuCount),
        gpuMemoryGib: gpuMem ? Number(gpuMem) : null,
        cpu,
        avx512,
        note: note || null,
      });
    });
  });

  it('is what the generator makes of the CSV', () => {
    expect(parseVmSizesCsv(readFileSync(CSV, 'utf8'))).toEqual(VM_SIZES);
    const text = renderVmSizesModule(VM_SIZES);
    expect(text).toContain("{ size: 'Standard_ND40rs_v2', vcpu: 40,");
    expect(text.match(/^ {2}\{ size: /gm)).toHaveLength(52);
  });

  it('finds sizes case-insensitively and names the known ones for an unknown size', () => {
    expect(findVmSize('standard_d4as_V4')?.size).toBe('Standard_D4as_v4');
    expect(knownSizes()).toHaveLength(52);
    let caught: unknown;
    try {
      getVmSize('Standard_Nope_v9');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UnknownSkuError);
    const e = caught as UnknownSkuError;
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.size).toBe('Standard_Nope_v9');
    expect(e.knownSizes).toHaveLength(52);
    expect(e.message).toContain('Standard_DS2_v2');
    expect(e.message).toContain('Standard_ND40rs_v2');
  });

  it('reads retirement dates from the notes', () => {
    expect(retiredOn(getVmSize('Standard_NC6s_v3'))).toBe('2025-09-30');
    expect(retiredOn(getVmSize('Standard_NC4as_T4_v3'))).toBeUndefined();
    expect(VM_SIZES.filter((v) => retiredOn(v)).map((v) => v.size)).toEqual([
      'Standard_NC6s_v3',
      'Standard_NC12s_v3',
      'Standard_NC24s_v3',
    ]);
  });

  it('parser refuses a changed layout', () => {
    expect(() => parseVmSizesCsv('size,vcpu\nx,1\n')).toThrow(/unexpected header/);
    expect(
      parseVmSizesCsv(`${readFileSync(CSV, 'utf8').split('\n')[0]}\n"A, b",1,2,,0,,"x ""y""",no,\n`),
    ).toEqual([
      {
        size: 'A, b',
        vcpu: 1,
        memoryGib: 2,
        gpuModel: null,
        gpuCount: 0,
        gpuMemoryGib: null,
        cpu: 'x "y"',
        avx512: 'no',
        note: null,
      },
    ]);
  });
});
