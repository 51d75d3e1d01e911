import { EmbedpoolError } from '@embedpool/core/errors';
import type { ImageRef } from '@embedpool/core/queue';
import { decodedLength, decodesWhole } from './base64';

/** Same bound as the job schema's URL field, so a URL the API accepts is never refused at enqueue time. */
export const MAX_URL_LENGTH = 8192;

// Standard and URL-safe alphabets both decode with Buffer; padding is optional (Node decodes either way).
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;
const WHITESPACE = /\s+/g;
// Only the head of a cell is inspected for a scheme: a multi-megabyte base64 string is never scanned for one.
const HEAD_CHARS = 256;
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
const DATA_URI = /^data:([^;,]*)((?:;[^;,]*)*),/i;

/**
 * One `image` cell of an Azure request, checked as far as the API can without fetching or decoding:
 * a URL passes the syntactic rules (http(s), no credentials, a host); the address policy (DNS, private
 * ranges, allow list) is the worker's, because it must hold at connect time. Base64 is checked for its
 * alphabet and its decoded size computed from its length, so a huge string is scanned once and never decoded.
 */
export function parseImageCell(cell: string, maxImageBytes: number): ImageRef {
  if (cell.length === 0) throw new EmbedpoolError('IMAGE_EMPTY', 'image is an empty string');
  const head = cell.slice(0, HEAD_CHARS).trimStart();
  const scheme = SCHEME.exec(head)?.[1]?.toLowerCase();
  if (scheme === undefined) return { kind: 'base64', data: checkBase64(cell, maxImageBytes) };
  if (scheme === 'data')
    return { kind: 'base64', data: checkBase64(stripDataUri(cell, head), maxImageBytes) };
  if (scheme === 'http' || scheme === 'https') return { kind: 'url', url: checkUrl(cell.trim()) };
  throw new EmbedpoolError(
    'URL_SCHEME_NOT_ALLOWED',
    `scheme ${scheme}: is not allowed (http and https only)`,
  );
}

function stripDataUri(cell: string, head: string): string {
  const m = DATA_URI.exec(head);
  if (!m)
    throw new EmbedpoolError('INVALID_BASE64', 'malformed data URI (expected data:image/...;base64,...)');
  const mime = (m[1] ?? '').trim().toLowerCase();
  if (!mime.startsWith('image/')) {
    throw new EmbedpoolError('IMAGE_UNSUPPORTED_FORMAT', `data URI has media type "${mime}", not image/*`);
  }
  const params = (m[2] ?? '').toLowerCase().split(';');
  if (!params.includes('base64')) {
    throw new EmbedpoolError('INVALID_BASE64', 'data URI is not base64-encoded (missing ;base64)');
  }
  // The prefix was matched on a trimmed head; skip the same leading whitespace in the full cell.
  const offset = cell.length - cell.trimStart().length;
  return cell.slice(offset + m[0].length);
}

/**
 * Returns the payload without whitespace (MIME-wrapped base64, as Python's `base64.encodebytes` writes it,
 * is common in Azure samples), so a worker only ever sees one canonical form.
 */
export function checkBase64(input: string, maxImageBytes: number): string {
  if (decodesWhole(input, maxImageBytes)) return input;
  let data = input;
  if (!BASE64.test(data)) {
    data = input.replace(WHITESPACE, '');
    if (data.length === input.length || !BASE64.test(data)) {
      throw new EmbedpoolError('INVALID_BASE64', 'image is neither an http(s) URL nor valid base64');
    }
  }
  const bytes = decodedLength(data);
  if (bytes === 0) throw new EmbedpoolError('IMAGE_EMPTY', 'image is empty');
  if (bytes < 0) throw new EmbedpoolError('INVALID_BASE64', 'base64 length is not valid');
  if (bytes > maxImageBytes) {
    throw new EmbedpoolError(
      'IMAGE_TOO_LARGE',
      `image is ${bytes} bytes, more than the ${maxImageBytes} allowed`,
    );
  }
  return data;
}

function checkUrl(raw: string): string {
  if (raw.length > MAX_URL_LENGTH) {
    throw new EmbedpoolError('URL_INVALID', `URL longer than ${MAX_URL_LENGTH} characters`);
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new EmbedpoolError('URL_INVALID', 'invalid URL');
  }
  if (url.username !== '' || url.password !== '') {
    throw new EmbedpoolError('URL_CREDENTIALS_NOT_ALLOWED', 'credentials in URLs are not allowed');
  }
  if (url.hostname === '') throw new EmbedpoolError('URL_INVALID', 'URL has no host');
  if (url.href.length > MAX_URL_LENGTH) {
    throw new EmbedpoolError('URL_INVALID', `URL longer than ${MAX_URL_LENGTH} characters`);
  }
  return url.href;
}
