import { basename } from 'node:path';
import { EmbedpoolError } from '../errors';
import { identityPath, readModelIdentity } from './identity';

export interface ResolvedModelId {
  id: string;
  /** `env`: MODEL_ID; `known`: the cache or builder says (repo@commit, random seed); `sidecar`: the model's identity file; `content`: no id, its sha256 stands in (never in production). */
  from: 'env' | 'known' | 'sidecar' | 'content';
  /** Set when the id is a stand-in a person should fix. */
  warning?: string;
}

/**
 * The id a worker reports for its model (in answers, shard metadata, metrics), in order: MODEL_ID; what
 * the source already knows (a cached hub snapshot's repo@commit, a random build's seed); the sidecar
 * `<model>.identity.json` written by `embedpool model build`/`fetch`, if its sha256 matches the file.
 * Without any, production refuses: two fleets could otherwise write vectors of different models under
 * one name. Elsewhere the file's sha256 stands in, so the name at least changes with the bytes.
 */
export async function resolveModelId(opts: {
  modelPath: string;
  envId?: string | undefined;
  knownId?: string | undefined;
  production: boolean;
}): Promise<ResolvedModelId> {
  if (opts.envId) return { id: opts.envId, from: 'env' };
  if (opts.knownId) return { id: opts.knownId, from: 'known' };
  const read = await readModelIdentity(opts.modelPath);
  if (read.status === 'ok') return { id: read.identity.id, from: 'sidecar' };
  const sidecar = basename(identityPath(opts.modelPath));
  const why =
    read.status === 'missing'
      ? `no ${sidecar} beside it`
      : read.status === 'mismatch'
        ? `its ${sidecar} was written for another file (sha256 ${read.claimed.sha256.slice(0, 12)}, this file ${read.sha256.slice(0, 12)})`
        : `its ${sidecar} is unreadable (${read.reason})`;
  if (opts.production) {
    throw new EmbedpoolError(
      'CONFIG_INVALID',
      `the model at ${opts.modelPath} has no id (${why}): set MODEL_ID, or build or fetch it with \`embedpool model build\` / \`embedpool model fetch\`, which record one`,
    );
  }
  return {
    id: `sha256:${read.sha256.slice(0, 12)}`,
    from: 'content',
    warning: `the model at ${opts.modelPath} has no id (${why}); reporting its sha256 instead (production refuses to start like this)`,
  };
}
