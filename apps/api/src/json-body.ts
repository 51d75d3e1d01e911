import { isAscii } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import express, { type RequestHandler } from 'express';
import { decodesWhole } from './base64';

/**
 * The JSON body parser of the image routes: the same contract as `express.json` (types, limit, inflate,
 * strict top level, a UTF-8 BOM skipped, an empty body read as `{}`, errors typed `entity.parse.failed`,
 * `entity.too.large`, `charset.unsupported`), and the same `req.body`, at a fraction of the CPU for bodies
 * that carry base64 images. A 200 KB image is a 260 KB JSON string: decoding the body to UTF-16-capable text
 * and letting JSON.parse copy that string again cost ~2.6 ms of the API's CPU per image (a profile of
 * `/score`: over a third of the process). Here long strings that need no unescaping (printable ASCII, no
 * backslash: every base64 image) are lifted out of the raw bytes as they are (one latin1 copy), the small
 * rest is parsed, and the lifted strings are put back in their places.
 *
 * Bodies declaring a charset other than UTF-8 go to `express.json` itself.
 */
export function jsonBody(limit: number | string): RequestHandler {
  const type = ['application/json', 'application/*+json'];
  const full = express.json({ limit, type });
  const raw = express.raw({ limit, type });
  return (req, res, next) => {
    if (!isUtf8(req.headers['content-type'])) {
      full(req, res, next);
      return;
    }
    raw(req, res, (err?: unknown) => {
      if (err) return next(err);
      if (!Buffer.isBuffer(req.body)) return next();
      try {
        req.body = parseJsonBytes(req.body);
      } catch (e) {
        return next(parseFailed(e));
      }
      next();
    });
  };
}

const CHARSET = /;\s*charset\s*=/i;
const UTF8 = /;\s*charset\s*=\s*"?utf-8"?\s*(;|$)/i;

/** No charset (JSON's default, UTF-8) or exactly UTF-8. */
function isUtf8(contentType: string | undefined): boolean {
  return contentType === undefined || !CHARSET.test(contentType) || UTF8.test(contentType);
}

/** Strings shorter than this are parsed in place: lifting them would cost more than it saves. */
const MIN_LIFTED = 1024;
/**
 * A lifted string's stand-in: a NUL, this process's random tag, its number. A client cannot send a string
 * the reviver would take for one without knowing the tag.
 */
const MARK = `\u0000${randomBytes(12).toString('base64url')}:`;
const MARK_JSON = `\\u0000${MARK.slice(1)}`;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** `JSON.parse` of UTF-8 bytes, as body-parser does it (BOM skipped, `{}` when empty, objects and arrays only). */
export function parseJsonBytes(buf: Buffer): unknown {
  const start = buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
  if (buf.length === start) return {};
  const ranges = longValues(buf, start);
  if (ranges.length === 0) return strictParse(buf.toString('utf8', start));
  // One latin1 string of the whole body, its long values slices of it (V8 shares, not copies, the
  // characters): one string to allocate per request, not one per image (a fresh 260 KB string costs ~1 ms).
  const text = buf.toString('latin1');
  const lifted: string[] = [];
  const pieces: Buffer[] = [];
  let copied = start;
  for (const [open, close] of ranges) {
    const value = text.slice(open + 1, close);
    // A base64 image proves itself plain at native speed (its alphabet is all printable ASCII); anything
    // else is checked byte by byte.
    if (!decodesWhole(value) && !plainBytes(buf, open + 1, close)) continue;
    pieces.push(buf.subarray(copied, open), Buffer.from(`"${MARK_JSON}${lifted.length}"`));
    lifted.push(value);
    copied = close + 1;
  }
  if (lifted.length === 0) return strictParse(buf.toString('utf8', start));
  pieces.push(buf.subarray(copied));
  try {
    return strictParse(Buffer.concat(pieces).toString('utf8'), (_key, v) =>
      typeof v === 'string' && v.startsWith(MARK) ? lifted[Number(v.slice(MARK.length))] : v,
    );
  } catch {
    // Lifting keeps a body valid or invalid as it was; the whole body's own error is the one to report.
    return strictParse(buf.toString('utf8', start));
  }
}

/** The quotes around every string value of at least MIN_LIFTED bytes (keys excluded), in order. */
function longValues(buf: Buffer, start: number): [number, number][] {
  const ranges: [number, number][] = [];
  let pos = start;
  for (;;) {
    const open = buf.indexOf(QUOTE, pos);
    if (open < 0) break;
    const close = closingQuote(buf, open + 1);
    if (close < 0) break;
    if (close - open - 1 >= MIN_LIFTED && !isKey(buf, close + 1)) ranges.push([open, close]);
    pos = close + 1;
  }
  return ranges;
}

/**
 * Whether bytes [from, to) of a string's contents are its value one to one: printable ASCII (what JSON
 * allows unescaped) and no backslash (no quote either: `to` is the first unescaped one). The ASCII and
 * backslash tests are native scans (~5 us for a 260 KB image); the control characters, which JSON.parse
 * would refuse, are found four bytes at a time. A regex over the string took ~260 us.
 */
export function plainBytes(buf: Buffer, from: number, to: number): boolean {
  const bytes = buf.subarray(from, to);
  if (!isAscii(bytes) || bytes.indexOf(BACKSLASH) >= 0) return false;
  let i = 0;
  const misaligned = (4 - (bytes.byteOffset % 4)) % 4;
  for (; i < misaligned; i++) if (i >= bytes.length || bytes[i]! < 0x20) return i >= bytes.length;
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset + i, (bytes.length - i) >>> 2);
  for (let k = 0; k < words.length; k++) {
    const w = words[k]!;
    // Some byte below 0x20 (every byte is below 0x80 here): the classic "has less than" word test.
    if (((w - 0x20202020) & ~w & 0x80808080) !== 0) return false;
  }
  for (i += words.length * 4; i < bytes.length; i++) if (bytes[i]! < 0x20) return false;
  return true;
}

/** Whether the string that ended before `from` is an object's key (a key is never lifted: only values are put back). */
function isKey(buf: Buffer, from: number): boolean {
  let i = from;
  while (buf[i] === 0x20 || buf[i] === 0x09 || buf[i] === 0x0a || buf[i] === 0x0d) i++;
  return buf[i] === 0x3a;
}

/** The unescaped quote that ends the string whose contents start at `from`, or -1. */
function closingQuote(buf: Buffer, from: number): number {
  let at = from;
  for (;;) {
    const q = buf.indexOf(QUOTE, at);
    if (q < 0) return -1;
    let slashes = 0;
    while (buf[q - 1 - slashes] === BACKSLASH) slashes++;
    if (slashes % 2 === 0) return q;
    at = q + 1;
  }
}

const FIRST_NON_WHITESPACE = /^[ \t\n\r]*([^ \t\n\r]|$)/;

/** body-parser's strict mode: the top level is an object or an array. */
function strictParse(text: string, reviver?: (key: string, value: unknown) => unknown): unknown {
  const first = FIRST_NON_WHITESPACE.exec(text)?.[1];
  if (first !== '{' && first !== '[') throw new SyntaxError(`Unexpected token ${first ?? 'end'} in JSON`);
  return JSON.parse(text, reviver);
}

function parseFailed(err: unknown): Error {
  const e = err instanceof Error ? err : new SyntaxError(String(err));
  return Object.assign(e, { status: 400, statusCode: 400, expose: true, type: 'entity.parse.failed' });
}
