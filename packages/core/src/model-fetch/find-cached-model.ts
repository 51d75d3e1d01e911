import { stat } from 'node:fs/promises';
import { EmbedpoolError } from '../errors';
import { cachedFilePath, defaultCacheDir, modelCacheDir } from './cache-paths';
import { type FetchedModel, toFetchedModel } from './fetched-model';
import { sha256File } from './hash';
import { findInHubCache, hubCacheDir, isCommit, readHubRef } from './hub-cache';
import { type ManifestOptions, type ModelFileName, modelManifest } from './manifest';
import { readRecord } from './record';

export interface FindCachedModelOptions extends ManifestOptions {
  /** Default: `EMBEDPOOL_CACHE_DIR`, else `~/.cache/embedpool`. */
  cacheDir?: string;
  /** Re-hash every file against the record (seconds for the full model); default checks presence and size. */
  verify?: boolean;
  /** The Hugging Face hub cache, also searched. Default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub. */
  hubCacheDir?: string;
}

/**
 * The local copy of a model that `fetchModel` completed earlier, or undefined. Never touches the network,
 * so a server can start on a machine that has no route to the hub.
 */
export async function findCachedModel(
  options: FindCachedModelOptions = {},
): Promise<FetchedModel | undefined> {
  const hub = options.hubCacheDir ?? hubCacheDir();
  let opts = options;
  // A branch or tag resolves only through the hub cache's refs/ here: this function never asks the network.
  if (options.revision !== undefined && !isCommit(options.revision)) {
    const repo = modelManifest({ ...options, revision: undefined }).repo;
    const commit = await readHubRef(hub, repo, options.revision);
    if (!commit) return undefined;
    opts = { ...options, revision: commit };
  }
  const manifest = modelManifest(opts);
  return (await findInOwnCache(opts, manifest)) ?? (await findInHub(hub, manifest, opts.verify));
}

async function findInHub(
  hub: string,
  manifest: ReturnType<typeof modelManifest>,
  verify?: boolean,
): Promise<FetchedModel | undefined> {
  const found = await findInHubCache(hub, manifest, verify);
  return found ? toFetchedModel(manifest, found.dir, found.paths, true) : undefined;
}

async function findInOwnCache(
  options: FindCachedModelOptions,
  manifest: ReturnType<typeof modelManifest>,
): Promise<FetchedModel | undefined> {
  const dir = modelCacheDir(options.cacheDir ?? defaultCacheDir(), manifest.repo, manifest.revision);
  const record = await readRecord(dir);
  if (!record || record.repo !== manifest.repo || record.revision !== manifest.revision) return undefined;
  const paths: Partial<Record<ModelFileName, string>> = {};
  for (const file of manifest.files) {
    const entry = record.files[file.path];
    if (!entry || (file.sha256 !== undefined && file.sha256 !== entry.sha256)) return undefined;
    const path = cachedFilePath(dir, file.path);
    const size = await stat(path).then(
      (s) => (s.isFile() ? s.size : undefined),
      () => undefined,
    );
    if (size !== entry.bytes) return undefined;
    if (options.verify && (await sha256File(path)) !== entry.sha256) return undefined;
    paths[file.name] = path;
  }
  return toFetchedModel(manifest, dir, paths, true);
}

/** Like `findCachedModel`, but a missing model is an error that says how to get it. */
export async function requireCachedModel(options: FindCachedModelOptions = {}): Promise<FetchedModel> {
  const found = await findCachedModel(options);
  if (found) return found;
  const named = options.revision !== undefined && !isCommit(options.revision);
  const manifest = modelManifest(named ? { ...options, revision: undefined } : options);
  const dir = modelCacheDir(options.cacheDir ?? defaultCacheDir(), manifest.repo, manifest.revision);
  throw new EmbedpoolError(
    'MODEL_NOT_FOUND',
    `model ${manifest.repo}@${manifest.revision} is not in the cache at ${dir}; fetch it first ` +
      '(fetchModel, with network access to the hub or HF_ENDPOINT)',
    { details: { repo: manifest.repo, revision: manifest.revision, dir } },
  );
}
