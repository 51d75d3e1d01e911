import { UnknownSkuError } from './errors';
import type { VmSize } from './types';
import { VM_SIZES } from './vm-sizes';

const BY_NAME = new Map(VM_SIZES.map((v) => [v.size.toLowerCase(), v]));

/** The catalogue's names, in the CSV's order. */
export function knownSizes(): string[] {
  return VM_SIZES.map((v) => v.size);
}

/** Case-insensitive lookup (IMDS and people both spell `Standard_D4as_v4` in varying case). */
export function findVmSize(name: string): VmSize | undefined {
  return BY_NAME.get(name.trim().toLowerCase());
}

/** Edit distance (insertions, deletions, substitutions) between two strings. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

const stem = (name: string) =>
  name
    .trim()
    .toLowerCase()
    .replace(/^standard_/, '');

/** The `count` known names closest to `name` (case and the `Standard_` prefix ignored), closest first. */
export function nearestSizes(name: string, count = 5): string[] {
  const want = stem(name);
  return VM_SIZES.map((v, i) => ({ size: v.size, d: editDistance(want, stem(v.size)), i }))
    .sort((x, y) => x.d - y.d || x.i - y.i)
    .slice(0, count)
    .map((x) => x.size);
}

export function getVmSize(name: string): VmSize {
  const found = findVmSize(name);
  if (!found) throw new UnknownSkuError(name, knownSizes(), nearestSizes(name));
  return found;
}

/** `2025-09-30` from a `retired 2025-09-30` note; undefined for sizes still offered. */
export function retiredOn(vm: Pick<VmSize, 'note'>): string | undefined {
  return /\bretired\s+(\d{4}-\d{2}-\d{2})\b/i.exec(vm.note ?? '')?.[1];
}

/**
 * Series whose vCPUs are whole physical cores. Azure's size pages describe these as non-hyperthreaded
 * (Dv2/DSv2 predate Azure's move to SMT in Dv3; NC A100 v4 "non-multithreaded" Milan cores; ND A100 v4
 * and NDv2 "physical" / "non-HyperThreaded" cores). Every other size is taken as two vCPUs per core,
 * which is Azure's norm since Dv3; where that is wrong the plan under-uses a CPU, never oversubscribes
 * it. Recalled from Azure's documentation, not probed: `embedpool calibrate` measures the truth.
 */
const WHOLE_CORE_SERIES: readonly RegExp[] = [
  /^Standard_DS?\d+_v2$/i,
  /^Standard_NC\d+ads_A100_v4$/i,
  /^Standard_ND96a(m)?sr(_A100)?_v4$/i,
  /^Standard_ND40rs_v2$/i,
];

/** Whether the size's vCPUs are SMT siblings (two per physical core). */
export function hasSmt(size: string): boolean {
  return !WHOLE_CORE_SERIES.some((re) => re.test(size));
}
