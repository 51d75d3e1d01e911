import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { EmbedpoolError } from '../errors';

const REPO_RE = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;
const COMMIT_RE = /^[0-9a-f]{40}$/;

export function defaultCacheDir(): string {
  return resolve(process.env.EMBEDPOOL_CACHE_DIR || join(homedir(), '.cache', 'embedpool'));
}

/** Repo, revision and file path end up in filesystem paths, so anything that could escape the cache is refused. */
export function assertModelRef(repo: string, revision: string): void {
  if (!REPO_RE.test(repo) || repo.includes('..')) {
    throw new EmbedpoolError('CONFIG_INVALID', `model repository must look like "owner/name", got "${repo}"`);
  }
  if (!COMMIT_RE.test(revision)) {
    throw new EmbedpoolError(
      'CONFIG_INVALID',
      `model revision must be a full 40-hex commit (branches move; the cache is keyed by commit), got "${revision}"`,
    );
  }
}

export function assertRepoPath(path: string): void {
  const parts = path.split('/');
  if (path.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..') || path.includes('\\')) {
    throw new EmbedpoolError('CONFIG_INVALID', `invalid file path in model repository: "${path}"`);
  }
}

/** `<cacheDir>/<owner>--<name>/<commit>`: one directory per immutable snapshot. */
export function modelCacheDir(cacheDir: string, repo: string, revision: string): string {
  assertModelRef(repo, revision);
  return join(resolve(cacheDir), repo.replaceAll('/', '--'), revision);
}

export function cachedFilePath(dir: string, repoPath: string): string {
  assertRepoPath(repoPath);
  return join(dir, ...repoPath.split('/'));
}

/** Bytes in flight live beside the final name, so the closing rename never crosses filesystems. */
export function partialPath(dest: string): string {
  return `${dest}.partial`;
}
