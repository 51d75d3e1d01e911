import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EmbedpoolError } from '../errors';
import { cachedFilePath, modelCacheDir } from './cache-paths';
import { hubFileUrl } from './fetch-model';
import { normalizeSha256, sha256FromEtag } from './hash';
import { DEFAULT_MODEL_REPO, DEFAULT_MODEL_REVISION, modelManifest } from './manifest';

const SHA = 'ab'.repeat(32);

describe('cache paths', () => {
  it('lays out <cacheDir>/<owner>--<name>/<commit>/<path>', () => {
    const dir = modelCacheDir('/c', DEFAULT_MODEL_REPO, DEFAULT_MODEL_REVISION);
    expect(dir).toBe(join('/c', 'Xenova--dinov2-base', DEFAULT_MODEL_REVISION));
    expect(cachedFilePath(dir, 'onnx/model.onnx')).toBe(join(dir, 'onnx', 'model.onnx'));
  });

  it('refuses branches, odd repository names and paths that leave the snapshot', () => {
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        return (err as EmbedpoolError).code;
      }
      return undefined;
    };
    expect(code(() => modelCacheDir('/c', DEFAULT_MODEL_REPO, 'main'))).toBe('CONFIG_INVALID');
    expect(code(() => modelCacheDir('/c', '../x', DEFAULT_MODEL_REVISION))).toBe('CONFIG_INVALID');
    expect(code(() => cachedFilePath('/c', '../../etc/passwd'))).toBe('CONFIG_INVALID');
    expect(code(() => cachedFilePath('/c', '/abs'))).toBe('CONFIG_INVALID');
    expect(new EmbedpoolError('CONFIG_INVALID', 'x').permanent).toBe(true);
  });

  it('builds hub URLs with the commit and an encoded path', () => {
    expect(hubFileUrl('https://hub.example/', 'a/b', DEFAULT_MODEL_REVISION, 'onnx/model fp16.onnx')).toBe(
      `https://hub.example/a/b/resolve/${DEFAULT_MODEL_REVISION}/onnx/model%20fp16.onnx`,
    );
  });
});

describe('hash helpers', () => {
  it('reads sha256 from quoted, weak or bare X-Linked-Etag values and ignores git sha1 ETags', () => {
    expect(sha256FromEtag(`"${SHA}"`)).toBe(SHA);
    expect(sha256FromEtag(`W/"${SHA.toUpperCase()}"`)).toBe(SHA);
    expect(sha256FromEtag(SHA)).toBe(SHA);
    expect(sha256FromEtag(`"${'a'.repeat(40)}"`)).toBeUndefined();
    expect(sha256FromEtag(undefined)).toBeUndefined();
    expect(normalizeSha256(`sha256:${SHA}`)).toBe(SHA);
  });
});

describe('manifest', () => {
  it('lists the files of each source and variant', () => {
    expect(modelManifest().files.map((f) => f.path)).toEqual([
      'onnx/model.onnx',
      'config.json',
      'preprocessor_config.json',
    ]);
    expect(modelManifest({ variant: 'fp16' }).files[0]!.path).toBe('onnx/model_fp16.onnx');
    expect(modelManifest({ source: 'facebook-safetensors' }).files.map((f) => f.name)).toEqual([
      'weights',
      'config',
      'preprocessorConfig',
    ]);
    expect(modelManifest({ pins: { 'config.json': SHA.toUpperCase() } }).files[1]!.sha256).toBe(SHA);
  });
});
