/**
 * The success body of /score: `[{"image_features":[...]}, ...]`, one object per row, in row order.
 *
 * Measured on 64 x 768 vectors (Node 20): number-to-text conversion is nearly all of the cost, so a
 * hand-written digit loop was slower (~12 ms) than V8's JSON.stringify over a plain array (~9 ms); what
 * is saved here is the nested object graph a single JSON.stringify of the whole answer would need.
 * Each float32 is written as the shortest text of its exact double value (what Python's json writes for
 * a numpy float32 turned into a float, as the Azure endpoint does); non-finite values become null.
 */
export function imageFeaturesJson(vectors: Float32Array, count: number, dim: number): string {
  const parts = new Array<string>(count);
  const row = new Array<number>(dim).fill(0);
  for (let r = 0; r < count; r++) {
    const offset = r * dim;
    for (let j = 0; j < dim; j++) row[j] = vectors[offset + j]!;
    parts[r] = `{"image_features":${JSON.stringify(row)}}`;
  }
  return `[${parts.join(',')}]`;
}
