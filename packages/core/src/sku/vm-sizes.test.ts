import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { editDistance, findVmSize, getVmSize, knownSizes, nearestSizes, retiredOn } from './catalogue';
import { UnknownSkuError } from './errors';
import { renderVmSizesModule } from './generate-vm-sizes';
import { CURRENT_VM_SIZES, MODEL_CARD_VM_SIZES, VM_SIZES } from './vm-sizes';
import { parseVmSizesCsv } from './vm-sizes-csv';

const HERE = dirname(fileURLToPath(import.meta.url));
const CSV = join(HERE, 'azure-vm-sizes.csv');
const CURRENT_CSV = join(HERE, 'azure-vm-sizes-current.csv');

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
    expect(MODEL_CARD_VM_SIZES).toHaveLength(rows.length);
    rows.forEach((cells, i) => {
      const vm = MODEL_CARD_VM_SIZES[i]!;
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

  it('is what the generator makes of the CSVs', () => {
    expect(parseVmSizesCsv(readFileSync(CSV, 'utf8'))).toEqual(MODEL_CARD_VM_SIZES);
    expect(parseVmSizesCsv(readFileSync(CURRENT_CSV, 'utf8'))).toEqual(CURRENT_VM_SIZES);
    expect(VM_SIZES).toEqual([...MODEL_CARD_VM_SIZES, ...CURRENT_VM_SIZES]);
    const text = renderVmSizesModule(MODEL_CARD_VM_SIZES, CURRENT_VM_SIZES);
    expect(text.match(/^ {2}\{ size: /gm)).toHaveLength(52 + CURRENT_VM_SIZES.length);
    expect(text).toContain("{ size: 'Standard_ND40rs_v2', vcpu: 40,");
  });

  it('current sizes: the families a user picks today, every row with its https source, none twice', () => {
    const names = VM_SIZES.map((v) => v.size.toLowerCase());
    expect(new Set(names).size).toBe(names.length);
    for (const vm of CURRENT_VM_SIZES) {
      expect(vm.source, vm.size).toMatch(
        /^https:\/\/learn\.microsoft\.com\/azure\/virtual-machines\/sizes\//,
      );
      expect(vm.vcpu, vm.size).toBeGreaterThan(0);
      expect(vm.memoryGib, vm.size).toBeGreaterThan(0);
      expect(vm.gpuCount > 0, vm.size).toBe(vm.gpuModel !== null && vm.gpuMemoryGib !== null);
    }
    const family = (re: RegExp) => CURRENT_VM_SIZES.filter((v) => re.test(v.size)).map((v) => v.size);
    expect(family(/^Standard_D\d+s_v5$/)).toHaveLength(8);
    expect(family(/^Standard_D\d+ds_v5$/)).toHaveLength(8);
    expect(family(/^Standard_D\d+s_v6$/)).toHaveLength(10);
    expect(family(/^Standard_E\d+i?s_v5$/)).toHaveLength(10);
    expect(family(/^Standard_NV\d+ad(m)?s_A10_v5$/)).toHaveLength(6);
    expect(family(/^Standard_NC\d+adi?s_H100_v5$/)).toEqual([
      'Standard_NC40ads_H100_v5',
      'Standard_NC80adis_H100_v5',
    ]);
    expect(family(/^Standard_ND96isr_H[12]00_v5$/)).toEqual([
      'Standard_ND96isr_H100_v5',
      'Standard_ND96isr_H200_v5',
    ]);
    // NC A100 v4 is in the model card's list.
    expect(MODEL_CARD_VM_SIZES.filter((v) => /^Standard_NC\d+ads_A100_v4$/.test(v.size))).toHaveLength(3);
    expect(getVmSize('Standard_NC40ads_H100_v5')).toMatchObject({
      vcpu: 40,
      memoryGib: 320,
      gpuCount: 1,
      gpuMemoryGib: 94,
    });
    expect(getVmSize('Standard_ND96isr_H200_v5')).toMatchObject({ gpuCount: 8, gpuMemoryGib: 141 });
  });

  it('finds sizes case-insensitively and names the nearest known ones for an unknown size', () => {
    expect(findVmSize('standard_d4as_V4')?.size).toBe('Standard_D4as_v4');
    expect(knownSizes()).toHaveLength(VM_SIZES.length);
    let caught: unknown;
    try {
      getVmSize('Standard_D8s_v7');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UnknownSkuError);
    const e = caught as UnknownSkuError;
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.size).toBe('Standard_D8s_v7');
    expect(e.knownSizes).toHaveLength(VM_SIZES.length);
    expect(e.nearest).toHaveLength(5);
    expect(e.nearest.slice(0, 2)).toEqual(['Standard_D8s_v5', 'Standard_D8s_v6']);
    expect(e.message).toMatch(
      /unknown Azure VM size "Standard_D8s_v7"; nearest known sizes: Standard_D8s_v5, Standard_D8s_v6, /,
    );
    expect(e.message).toContain(`shows all ${VM_SIZES.length}`);
    expect(nearestSizes('nc40ads_h100', 1)).toEqual(['Standard_NC40ads_H100_v5']);
    expect(editDistance('kitten', 'sitting')).toBe(3);
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
