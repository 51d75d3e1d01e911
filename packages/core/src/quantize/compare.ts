import type { InferenceSession } from 'onnxruntime-node';
import { embedAll } from './embed-session';
import type { LoadedImage } from './images';

export interface ImageAgreement {
  name: string;
  cosine: number;
  /** |b| / |a|: how far the candidate's vector length drifted from the reference's. */
  normRatio: number;
}

/** How closely model b reproduces model a on a set of images. */
export interface Agreement {
  images: number;
  minCosine: number;
  meanCosine: number;
  minNormRatio: number;
  maxNormRatio: number;
  /** The image with the lowest cosine. */
  worst: ImageAgreement;
  perImage: ImageAgreement[];
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

export function agreement(names: string[], a: Float32Array[], b: Float32Array[]): Agreement {
  if (names.length === 0 || a.length !== names.length || b.length !== names.length) {
    throw new Error('agreement needs one vector per image from each model');
  }
  const perImage = names.map((name, i) => {
    const x = a[i]!;
    const y = b[i]!;
    if (x.length !== y.length) throw new Error(`${name}: dimensions differ (${x.length} vs ${y.length})`);
    const nx = Math.sqrt(dot(x, x));
    const ny = Math.sqrt(dot(y, y));
    const cosine = nx > 0 && ny > 0 ? dot(x, y) / (nx * ny) : nx === ny ? 1 : 0;
    return { name, cosine, normRatio: nx > 0 ? ny / nx : ny === 0 ? 1 : Number.POSITIVE_INFINITY };
  });
  const worst = perImage.reduce((w, r) => (r.cosine < w.cosine ? r : w));
  const ratios = perImage.map((r) => r.normRatio);
  return {
    images: perImage.length,
    minCosine: worst.cosine,
    meanCosine: perImage.reduce((s, r) => s + r.cosine, 0) / perImage.length,
    minNormRatio: Math.min(...ratios),
    maxNormRatio: Math.max(...ratios),
    worst,
    perImage,
  };
}

/** Embeds `images` with both sessions and compares the vectors. */
export async function compareSessions(
  a: InferenceSession,
  b: InferenceSession,
  images: LoadedImage[],
): Promise<Agreement> {
  const pixels = images.map((i) => i.pixels);
  const [va, vb] = [await embedAll(a, pixels), await embedAll(b, pixels)];
  return agreement(
    images.map((i) => i.name),
    va,
    vb,
  );
}
