import { existsSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { sha256File } from '../model-fetch/hash';

/**
 * A model's identity travels beside it in `<model file>.identity.json`: the id outputs and metrics report
 * (`facebook/dinov2-base@<commit>`, `random-dinov2-base-seed0`), and the sha256 of the file it names, so
 * a sidecar copied next to another file is recognised as not belonging to it. A sidecar rather than ONNX
 * metadata: a fetched export keeps the bytes the hub's sha256 was verified against.
 */
export const modelIdentitySchema = z.object({
  id: z.string().min(1).max(256),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Where the id came from (`model build`, `model fetch`), for people reading the file. */
  source: z.record(z.string(), z.unknown()).optional(),
  createdAt: z.string().optional(),
});
export type ModelIdentity = z.infer<typeof modelIdentitySchema>;

export function identityPath(modelPath: string): string {
  return `${modelPath}.identity.json`;
}

/** `owner/name@<commit>` for fp32, with `:fp16` for the half-precision file of the same checkpoint. */
export function fetchedModelId(repo: string, revision: string, variant: 'fp32' | 'fp16' = 'fp32'): string {
  return variant === 'fp32' ? `${repo}@${revision}` : `${repo}@${revision}:${variant}`;
}

/** Built with deterministic random weights: `random-<preset>-seed<n>` (`random-dinov2-base-seed0`). */
export function randomModelId(preset: string, seed: number): string {
  return `random-${preset}-seed${seed}`;
}

/** Hashes the model and writes its sidecar atomically; answers what was written. */
export async function writeModelIdentity(
  modelPath: string,
  id: string,
  source?: Record<string, unknown>,
): Promise<ModelIdentity> {
  const identity: ModelIdentity = modelIdentitySchema.parse({
    id,
    sha256: await sha256File(modelPath),
    ...(source ? { source } : {}),
    createdAt: new Date().toISOString(),
  });
  const path = identityPath(modelPath);
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(identity, null, 2)}\n`);
  await rename(tmp, path);
  return identity;
}

export type ReadIdentity =
  | { status: 'ok'; identity: ModelIdentity }
  | { status: 'missing'; sha256: string }
  | { status: 'mismatch'; sha256: string; claimed: ModelIdentity }
  | { status: 'invalid'; sha256: string; reason: string };

/** The sidecar of a model, checked against the file's sha256. */
export async function readModelIdentity(modelPath: string): Promise<ReadIdentity> {
  const sha256 = await sha256File(modelPath);
  const path = identityPath(modelPath);
  if (!existsSync(path)) return { status: 'missing', sha256 };
  let parsed: ReturnType<typeof modelIdentitySchema.safeParse>;
  try {
    parsed = modelIdentitySchema.safeParse(JSON.parse(await readFile(path, 'utf8')));
  } catch (err) {
    return { status: 'invalid', sha256, reason: (err as Error).message };
  }
  if (!parsed.success) return { status: 'invalid', sha256, reason: parsed.error.message };
  if (parsed.data.sha256 !== sha256) return { status: 'mismatch', sha256, claimed: parsed.data };
  return { status: 'ok', identity: parsed.data };
}
