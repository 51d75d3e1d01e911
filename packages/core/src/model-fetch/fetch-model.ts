import { EmbedpoolError } from '../errors';
import type { Logger } from '../logger';
import { cachedFilePath, defaultCacheDir, modelCacheDir } from './cache-paths';
import { downloadFile } from './download-file';
import { type FetchedModel, toFetchedModel } from './fetched-model';
import { findCachedModel } from './find-cached-model';
import type { Timeouts } from './http';
import { hubCacheDir, hubOffline, resolveRevision } from './hub-cache';
import { DEFAULT_HF_ENDPOINT, type ManifestOptions, type ModelFileName, modelManifest } from './manifest';
import type { ProgressCallback, ProgressMode } from './progress';
import { type FetchRecordEntry, writeRecord } from './record';

export interface FetchModelOptions extends ManifestOptions {
  /** Default: `EMBEDPOOL_CACHE_DIR`, else `~/.cache/embedpool`. */
  cacheDir?: string;
  /** Hub base URL. Default: `HF_ENDPOINT`, else https://huggingface.co. */
  endpoint?: string;
  /** Bearer token. Default: `HF_TOKEN`. Sent to the endpoint's origin only, never to redirect targets. */
  token?: string;
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
  progress?: ProgressMode;
  retries?: number;
  retryDelayMs?: number;
  timeouts?: Timeouts;
  logger?: Logger;
  /** No network at all: caches only. Default: HF_HUB_OFFLINE. */
  offline?: boolean;
  /** The Hugging Face hub cache, searched first with ours. Default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub. */
  hubCacheDir?: string;
}

/** `<endpoint>/<repo>/resolve/<commit>/<path>`, the hub's download URL for a file at a commit. */
export function hubFileUrl(endpoint: string, repo: string, revision: string, path: string): string {
  const base = endpoint.replace(/\/+$/, '');
  const encodedPath = path.split('/').map(encodeURIComponent).join('/');
  return `${base}/${repo}/resolve/${revision}/${encodedPath}`;
}

/**
 * Makes the model's files present and verified in the cache, downloading only what is missing, and
 * returns their paths. A complete earlier fetch is returned without any network request.
 */
export async function fetchModel(options: FetchModelOptions = {}): Promise<FetchedModel> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const hubCache = options.hubCacheDir ?? hubCacheDir();
  const offline = options.offline ?? hubOffline();
  const endpoint = options.endpoint ?? (process.env.HF_ENDPOINT || DEFAULT_HF_ENDPOINT);
  if (!/^https?:\/\//.test(endpoint)) {
    throw new EmbedpoolError('CONFIG_INVALID', `HF endpoint must be an http(s) URL, got "${endpoint}"`);
  }
  const token = options.token ?? process.env.HF_TOKEN;
  // A branch or tag becomes the commit it points at (hub cache refs/, else the hub's API) before anything else.
  const revision =
    options.revision === undefined
      ? undefined
      : await resolveRevision({
          repo: modelManifest({ ...options, revision: undefined }).repo,
          revision: options.revision,
          endpoint,
          ...(token ? { token } : {}),
          offline,
          hubCache,
          ...(options.signal ? { signal: options.signal } : {}),
        });
  const resolved = revision === undefined ? options : { ...options, revision };
  const manifest = modelManifest(resolved);
  const dir = modelCacheDir(cacheDir, manifest.repo, manifest.revision);
  const cached = await findCachedModel({ ...resolved, cacheDir, hubCacheDir: hubCache });
  if (cached) return cached;
  if (offline) {
    throw new EmbedpoolError(
      'MODEL_NOT_FOUND',
      `HF_HUB_OFFLINE is set and ${manifest.repo}@${manifest.revision} is in neither cache ` +
        `(${cacheDir}, hub cache ${hubCache}); nothing was downloaded. Unset HF_HUB_OFFLINE to fetch it.`,
      { details: { repo: manifest.repo, revision: manifest.revision, cacheDir, hubCache } },
    );
  }
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const paths: Partial<Record<ModelFileName, string>> = {};
  const entries: Record<string, FetchRecordEntry> = {};
  // One file at a time: the link is the bottleneck, and one bar or log stream at a time stays readable.
  for (const file of manifest.files) {
    const result = await downloadFile({
      url: hubFileUrl(endpoint, manifest.repo, manifest.revision, file.path),
      dest: cachedFilePath(dir, file.path),
      sha256: file.sha256,
      headers,
      signal: options.signal,
      onProgress: options.onProgress,
      progress: options.progress,
      retries: options.retries,
      retryDelayMs: options.retryDelayMs,
      timeouts: options.timeouts,
      logger: options.logger,
      label: `${manifest.repo}/${file.path}`,
    });
    paths[file.name] = result.path;
    entries[file.path] = { sha256: result.sha256, bytes: result.bytes, verified: result.verified };
  }
  await writeRecord(dir, manifest, entries);
  return toFetchedModel(manifest, dir, paths, false);
}
