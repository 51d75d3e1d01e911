/**
 * The Hugging Face hub cache, as huggingface_hub (Python) and @huggingface/hub lay it out, so a model a
 * user already downloaded with `huggingface-cli`, transformers or timm is found without a download:
 *
 *   $HF_HUB_CACHE (else $HF_HOME/hub, else ~/.cache/huggingface/hub)
 *     models--<org>--<name>/refs/<branch or tag>        -> the commit it points at
 *     models--<org>--<name>/snapshots/<commit>/<path>    -> symlink to ../../blobs/<etag>
 *     models--<org>--<name>/blobs/<etag>                 (an LFS file's etag is its sha256)
 *
 * HF_HUB_OFFLINE=1 means no network at all: revisions resolve through refs/ and files come from caches.
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { EmbedpoolError } from '../errors';
import { assertRepoPath } from './cache-paths';
import { sha256File } from './hash';
import type { ModelFileName, ModelManifest } from './manifest';

const COMMIT_RE = /^[0-9a-f]{40}$/;
const REVISION_RE = /^[A-Za-z0-9][\w./-]{0,127}$/;
const TRUE = new Set(['1', 'true', 'yes', 'on']);

export function isCommit(revision: string): boolean {
  return COMMIT_RE.test(revision);
}

/** HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub (huggingface_hub's own order). */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return resolve(env.HF_HUB_CACHE);
  if (env.HF_HOME) return resolve(env.HF_HOME, 'hub');
  return join(homedir(), '.cache', 'huggingface', 'hub');
}

/** HF_HUB_OFFLINE as huggingface_hub reads it: 1/true/yes/on. */
export function hubOffline(env: NodeJS.ProcessEnv = process.env): boolean {
  return TRUE.has(String(env.HF_HUB_OFFLINE ?? '').toLowerCase());
}

export function hubRepoDir(hubCache: string, repo: string): string {
  return join(hubCache, `models--${repo.replaceAll('/', '--')}`);
}

function assertRevisionName(revision: string): void {
  if (!REVISION_RE.test(revision) || revision.includes('..')) {
    throw new EmbedpoolError(
      'CONFIG_INVALID',
      `revision must be a commit, branch or tag name, got "${revision}"`,
    );
  }
}

/** The commit a branch or tag points at in the hub cache, or undefined when the cache has no such ref. */
export async function readHubRef(
  hubCache: string,
  repo: string,
  revision: string,
): Promise<string | undefined> {
  assertRevisionName(revision);
  try {
    const sha = (
      await readFile(join(hubRepoDir(hubCache, repo), 'refs', ...revision.split('/')), 'utf8')
    ).trim();
    return isCommit(sha) ? sha : undefined;
  } catch {
    return undefined;
  }
}

export interface ResolveRevisionOptions {
  repo: string;
  revision: string;
  endpoint: string;
  token?: string;
  offline: boolean;
  hubCache: string;
  signal?: AbortSignal;
}

/**
 * A branch or tag name -> the commit it points at now: from the hub cache's refs/, else (online) from
 * the hub's `GET /api/models/<repo>/revision/<rev>`. A commit passes through. The cache is keyed by
 * commit, so what was fetched never changes under a name.
 */
export async function resolveRevision(o: ResolveRevisionOptions): Promise<string> {
  if (isCommit(o.revision)) return o.revision;
  const cached = await readHubRef(o.hubCache, o.repo, o.revision);
  if (cached) return cached;
  if (o.offline) {
    throw new EmbedpoolError(
      'MODEL_NOT_FOUND',
      `HF_HUB_OFFLINE is set and the hub cache at ${o.hubCache} has no ref "${o.revision}" for ${o.repo}; ` +
        'pass the commit with --revision, or fetch once with network access',
    );
  }
  const url = `${o.endpoint.replace(/\/+$/, '')}/api/models/${o.repo}/revision/${encodeURIComponent(o.revision)}`;
  let res: Response;
  try {
    res = await fetch(url, {
      headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
      ...(o.signal ? { signal: o.signal } : {}),
    });
  } catch (err) {
    throw new EmbedpoolError(
      'DOWNLOAD_FAILED',
      `cannot ask ${o.endpoint} what ${o.repo}@${o.revision} is: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  if (res.status === 404) {
    throw new EmbedpoolError('MODEL_NOT_FOUND', `${o.repo} has no revision "${o.revision}" on ${o.endpoint}`);
  }
  if (!res.ok) {
    throw new EmbedpoolError(
      'DOWNLOAD_FAILED',
      `${o.endpoint} answered ${res.status} for ${o.repo}@${o.revision}${res.status === 401 ? ' (set HF_TOKEN for gated or private models)' : ''}`,
    );
  }
  const body = (await res.json().catch(() => ({}))) as { sha?: unknown };
  if (typeof body.sha !== 'string' || !isCommit(body.sha)) {
    throw new EmbedpoolError('DOWNLOAD_FAILED', `${o.endpoint} gave no commit for ${o.repo}@${o.revision}`);
  }
  return body.sha;
}

/**
 * The manifest's files in a hub-cache snapshot, or undefined when any is missing. A pinned sha256 is
 * checked against the blob's name (the hub names LFS blobs by their sha256), or its content when `verify`.
 */
export async function findInHubCache(
  hubCache: string,
  manifest: ModelManifest,
  verify = false,
): Promise<{ dir: string; paths: Partial<Record<ModelFileName, string>> } | undefined> {
  const dir = join(hubRepoDir(hubCache, manifest.repo), 'snapshots', manifest.revision);
  const paths: Partial<Record<ModelFileName, string>> = {};
  for (const file of manifest.files) {
    assertRepoPath(file.path);
    const path = join(dir, ...file.path.split('/'));
    const ok = await stat(path).then(
      (s) => s.isFile(),
      () => false,
    );
    if (!ok) return undefined;
    if (file.sha256 !== undefined) {
      const blob = basename(await realpath(path));
      if (blob !== file.sha256 && (!verify || (await sha256File(path)) !== file.sha256)) return undefined;
    }
    paths[file.name] = path;
  }
  return { dir, paths };
}
