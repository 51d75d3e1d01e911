import picomatch from 'picomatch';
import { OutputLayout } from './names';
import type { IngestionOutput, IngestionSource } from './schemas';

export type BlobFilter = (name: string) => boolean;

/**
 * Which listed blobs an ingestion takes: the glob (over the whole name) and the extensions, both optional,
 * and never the output's own files when the output lives inside the source.
 */
export function blobFilter(source: IngestionSource, output?: IngestionOutput): BlobFilter {
  const glob = source.glob ? picomatch(source.glob, { dot: true }) : undefined;
  const exts = source.extensions?.map((e) => (e.startsWith('.') ? e : `.${e}`).toLowerCase());
  const own = output && output.container === source.container ? new OutputLayout(output.prefix) : undefined;
  return (name) => {
    if (!name.startsWith(source.prefix)) return false;
    if (own?.owns(name)) return false;
    if (exts) {
      const lower = name.toLowerCase();
      if (!exts.some((e) => lower.endsWith(e))) return false;
    }
    return glob ? glob(name) : true;
  };
}

/** Checks a glob compiles, for a 400 at submission rather than a failed planner. */
export function validateGlob(glob: string): string | undefined {
  try {
    picomatch.makeRe(glob);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}
