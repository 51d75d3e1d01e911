/** One row of the Azure VM size catalogue (`vm-sizes.ts`), with the CSV's columns in camelCase. */
export interface VmSize {
  /** Azure's name, as IMDS reports it (`Standard_D4as_v4`). */
  size: string;
  vcpu: number;
  memoryGib: number;
  /** null on CPU-only sizes. */
  gpuModel: string | null;
  gpuCount: number;
  /** Memory of each GPU; null on CPU-only sizes. */
  gpuMemoryGib: number | null;
  /** Processor family as the catalogue words it (hosts vary within a size on older series). */
  cpu: string;
  avx512: 'yes' | 'no' | 'varies';
  /** Free text, e.g. `retired 2025-09-30`; null when the CSV cell is empty. */
  note: string | null;
  /**
   * The page the row was read from (`azure-vm-sizes-current.csv`); absent on the model card's rows
   * (`azure-vm-sizes.csv`), whose source is the model card.
   */
  source?: string;
}
