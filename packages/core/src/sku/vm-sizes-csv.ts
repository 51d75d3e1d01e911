import type { VmSize } from './types';

/** The CSV's header, in order; the parser refuses any other layout rather than guess. */
export const VM_SIZES_CSV_COLUMNS = [
  'size',
  'vcpu',
  'memory_gib',
  'gpu_model',
  'gpu_count',
  'gpu_memory_gib',
  'cpu',
  'avx512',
  'note',
] as const;

/** Splits one CSV record (RFC 4180 quoting: `"a, b"`, `""` for a quote). */
export function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function num(value: string, column: string, row: number, optional: true): number | null;
function num(value: string, column: string, row: number, optional?: false): number;
function num(value: string, column: string, row: number, optional = false): number | null {
  if (value === '' && optional) return null;
  const n = Number(value);
  if (value === '' || !Number.isFinite(n) || n < 0) {
    throw new Error(`azure-vm-sizes.csv row ${row}: ${column} must be a non-negative number, got "${value}"`);
  }
  return n;
}

/**
 * Parses `azure-vm-sizes.csv` (the model card's sizes) or `azure-vm-sizes-current.csv` (the same columns plus
 * `source`, the https page each row was read from) into catalogue rows: the generator's and the tests' reading.
 */
export function parseVmSizesCsv(text: string): VmSize[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const header = splitCsvLine(lines[0] ?? '');
  const withSource = header.join(',') === [...VM_SIZES_CSV_COLUMNS, 'source'].join(',');
  if (!withSource && header.join(',') !== VM_SIZES_CSV_COLUMNS.join(',')) {
    throw new Error(`azure-vm-sizes.csv: unexpected header "${header.join(',')}"`);
  }
  return lines.slice(1).map((line, i) => {
    const row = i + 2;
    const cells = splitCsvLine(line);
    if (cells.length !== header.length) {
      throw new Error(`azure-vm-sizes.csv row ${row}: ${cells.length} cells, expected ${header.length}`);
    }
    const [size, vcpu, memory, gpuModel, gpuCount, gpuMemory, cpu, avx512, note, source] = cells as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string | undefined,
    ];
    if (withSource && !/^https:\/\/\S+$/.test(source ?? '')) {
      throw new Error(`azure-vm-sizes.csv row ${row}: source must be an https URL, got "${source ?? ''}"`);
    }
    if (avx512 !== 'yes' && avx512 !== 'no' && avx512 !== 'varies') {
      throw new Error(`azure-vm-sizes.csv row ${row}: avx512 must be yes, no or varies, got "${avx512}"`);
    }
    return {
      size,
      vcpu: num(vcpu, 'vcpu', row),
      memoryGib: num(memory, 'memory_gib', row),
      gpuModel: gpuModel === '' ? null : gpuModel,
      gpuCount: num(gpuCount, 'gpu_count', row),
      gpuMemoryGib: num(gpuMemory, 'gpu_memory_gib', row, true),
      cpu,
      avx512,
      note: note === '' ? null : note,
      ...(withSource ? { source: source! } : {}),
    };
  });
}
