import { createHash } from 'node:crypto';

/**
 * The namespace of embedpool's row ids (a fixed, random UUID): ids made by this project cannot collide
 * with UUIDv5s of the same names in other namespaces.
 */
export const ROW_ID_NAMESPACE = '6f1d5c2e-8b4a-4e0f-9c3d-2a7b1e5f4d80';

/** RFC 9562 UUID version 5 (SHA-1) of `name` in `namespace`. */
export function uuidV5(name: string, namespace: string): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  if (ns.length !== 16) throw new Error(`not a UUID: ${namespace}`);
  const hash = createHash('sha1').update(ns).update(name, 'utf8').digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const h = hash.subarray(0, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * A shard row's `id`: UUIDv5 of `<container>/<blob name>` (for a URL from a manifest, of the URL). The
 * same blob gets the same id in every run and every output, so an upsert by id replaces its old vector. A
 * UUID is a valid Qdrant point id and Azure AI Search key (`A-Za-z0-9_-=`), and fits any SQL key column.
 */
export function blobRowId(container: string, blobName: string): string {
  return uuidV5(`${container}/${blobName}`, ROW_ID_NAMESPACE);
}
