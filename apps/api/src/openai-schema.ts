import { endianness } from 'node:os';
import { EmbedpoolError } from '@embedpool/core/errors';
import type { ImageRef } from '@embedpool/core/queue';
import { type RowFailure, RowFailuresError, toHttpError } from './http-errors';
import { parseImageCell } from './image-input';

/**
 * The OpenAI embeddings contract (`POST /v1/embeddings`) mapped onto image embeddings: every `input` string
 * is one image (an http(s) URL, a `data:image/...;base64,` URI or plain base64), checked exactly as a /score
 * cell is. See docs/openai.md for the whole mapping.
 */

export type EncodingFormat = 'float' | 'base64';
export const ENCODING_FORMATS: readonly EncodingFormat[] = ['float', 'base64'];

export interface EmbeddingsRequest {
  /** What the client asked for; informational only (the deployment serves one model). */
  model: string;
  images: ImageRef[];
  encodingFormat: EncodingFormat;
  /** Checked against the served model's dimension once it is known (the job result's `dim`). */
  dimensions: number | undefined;
}

export interface EmbeddingsLimits {
  maxImages: number;
  maxImageBytes: number;
}

/** The request field an error is about: OpenAI's `error.param`. */
export type OpenAiParam = 'model' | 'input' | 'encoding_format' | 'dimensions' | 'user';

function badParam(param: OpenAiParam, message: string): EmbedpoolError {
  return new EmbedpoolError('BAD_REQUEST', message, { details: { param } });
}

const TOKEN_ARRAYS =
  'token arrays are not supported: this service embeds images, so each input is an image URL, a data URI ' +
  'or base64 (LangChain: set check_embedding_ctx_length=False)';

/**
 * Turns a parsed JSON body into the images to embed, in input order. Request-level problems throw an
 * EmbedpoolError whose `details.param` names the field; per-image ones are collected over every input and
 * thrown together as RowFailuresError (row = index into `input`), like /score does.
 * Unknown fields are ignored (clients and frameworks add their own), and so is a null optional field.
 */
export function parseEmbeddingsRequest(body: unknown, limits: EmbeddingsLimits): EmbeddingsRequest {
  if (body === undefined) {
    throw new EmbedpoolError('BAD_REQUEST', 'expected a JSON body (Content-Type: application/json)');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new EmbedpoolError(
      'BAD_REQUEST',
      'expected a JSON object like {"model":"...","input":["<image url, data URI or base64>"]}',
    );
  }
  const b = body as Record<string, unknown>;

  const model = b.model;
  if (typeof model !== 'string' || model.trim() === '') {
    throw badParam('model', 'model: required, a non-empty string (this deployment serves one model)');
  }

  let encodingFormat: EncodingFormat = 'float';
  const format = b.encoding_format;
  if (format !== undefined && format !== null) {
    if (typeof format !== 'string' || !(ENCODING_FORMATS as readonly string[]).includes(format)) {
      throw badParam('encoding_format', 'encoding_format: must be "float" or "base64"');
    }
    encodingFormat = format as EncodingFormat;
  }

  let dimensions: number | undefined;
  const dims = b.dimensions;
  if (dims !== undefined && dims !== null) {
    if (typeof dims !== 'number' || !Number.isInteger(dims) || dims < 1) {
      throw badParam('dimensions', 'dimensions: must be a positive integer');
    }
    dimensions = dims;
  }

  if (b.user !== undefined && b.user !== null && typeof b.user !== 'string') {
    throw badParam('user', 'user: must be a string');
  }

  return { model, images: parseInput(b.input, limits), encodingFormat, dimensions };
}

function parseInput(input: unknown, limits: EmbeddingsLimits): ImageRef[] {
  if (input === undefined || input === null) {
    throw badParam('input', 'input: required, an image (URL, data URI or base64) or an array of them');
  }
  let items: unknown[];
  if (typeof input === 'string') items = [input];
  else if (Array.isArray(input)) items = input;
  else throw badParam('input', 'input: must be a string or an array of strings');

  if (items.length === 0) throw badParam('input', 'input: must not be empty');
  // One token array (number[]) or several (number[][]): what tokenizing clients send instead of text.
  if (
    items.some((x) => typeof x === 'number' || (Array.isArray(x) && x.every((t) => typeof t === 'number')))
  ) {
    throw badParam('input', `input: ${TOKEN_ARRAYS}`);
  }
  if (items.length > limits.maxImages) {
    throw new EmbedpoolError(
      'TOO_MANY_IMAGES',
      `input: ${items.length} images in one request; at most ${limits.maxImages} are allowed`,
      { details: { param: 'input' } },
    );
  }

  const images: ImageRef[] = [];
  const failures: RowFailure[] = [];
  items.forEach((item, row) => {
    if (typeof item !== 'string') {
      const message = `must be a string (an image URL, data URI or base64), got ${describe(item)}`;
      failures.push({ row, code: 'BAD_REQUEST', message });
      return;
    }
    if (looksLikeText(item)) {
      failures.push({ row, code: 'BAD_REQUEST', message: TEXT_INPUT });
      return;
    }
    try {
      images.push(parseImageCell(item, limits.maxImageBytes));
    } catch (err) {
      if (!(err instanceof EmbedpoolError)) throw err;
      failures.push({ row, code: err.code, message: err.message });
    }
  });
  if (failures.length > 0) throw new RowFailuresError(failures);
  return images;
}

const TEXT_INPUT =
  'is text, not an image: this endpoint embeds images only; send an image URL (http/https), a ' +
  'data:image/...;base64, URI or the base64 of the image file';
const SCHEME_HEAD = /^\s*[A-Za-z][A-Za-z0-9+.-]*:/;
const BASE64_HEAD = /^[A-Za-z0-9+/_-]{16}/;
const PRINTABLE = /^[\t\n\r\x20-\x7e]*$/;

/**
 * True for a sentence or a word where an image belongs (what a text-embedding client sends), so it is
 * refused at once instead of after a queue round trip. Plain base64 never holds a space (MIME wrapping
 * breaks lines, it does not pad with spaces), and every image format the workers decode starts with bytes
 * outside printable ASCII within its first 12 (magic numbers, binary sizes); text decodes to printable ASCII.
 */
export function looksLikeText(item: string): boolean {
  const head = item.slice(0, 256);
  if (SCHEME_HEAD.test(head)) return false;
  const trimmed = head.trim();
  if (trimmed.includes(' ')) return true;
  const b64 = BASE64_HEAD.exec(trimmed.replace(/\s+/g, ''))?.[0];
  if (b64 === undefined) return false;
  const bytes = Buffer.from(b64.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return PRINTABLE.test(bytes.toString('latin1'));
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}

/** The served model's dimension is only known from a result; OpenAI's `dimensions` can only restate it. */
export function checkDimensions(requested: number | undefined, dim: number, model: string): void {
  if (requested === undefined || requested === dim) return;
  const why =
    requested < dim
      ? `shortening embeddings is not supported (${model} is not trained for truncated embeddings)`
      : `${model} embeddings have only ${dim} dimensions`;
  throw badParam('dimensions', `dimensions: ${requested} is not supported: ${why}; omit it or pass ${dim}`);
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** `count * dim` float32 as OpenAI's base64: the little-endian bytes of each row's float32 values. */
function rowBase64(vectors: Float32Array, offset: number, dim: number): string {
  if (LITTLE_ENDIAN) {
    return Buffer.from(vectors.buffer, vectors.byteOffset + offset * 4, dim * 4).toString('base64');
  }
  const bytes = Buffer.allocUnsafe(dim * 4);
  for (let j = 0; j < dim; j++) bytes.writeFloatLE(vectors[offset + j]!, j * 4);
  return bytes.toString('base64');
}

/**
 * The success body: `{"object":"list","data":[{"object":"embedding","index":i,"embedding":...}],...}`.
 * Floats are written as /score writes them (the shortest text of each float32's exact double value), so
 * the float answer and a decoded base64 answer hold the same numbers. Images have no tokens: usage is 0.
 */
export function embeddingsJson(
  vectors: Float32Array,
  count: number,
  dim: number,
  format: EncodingFormat,
  model: string,
): string {
  const parts = new Array<string>(count);
  const row = new Array<number>(dim).fill(0);
  for (let r = 0; r < count; r++) {
    const offset = r * dim;
    let embedding: string;
    if (format === 'base64') {
      embedding = `"${rowBase64(vectors, offset, dim)}"`;
    } else {
      for (let j = 0; j < dim; j++) row[j] = vectors[offset + j]!;
      embedding = JSON.stringify(row);
    }
    parts[r] = `{"object":"embedding","index":${r},"embedding":${embedding}}`;
  }
  return (
    `{"object":"list","data":[${parts.join(',')}],"model":${JSON.stringify(model)},` +
    `"usage":{"prompt_tokens":0,"total_tokens":0}}`
  );
}

export interface OpenAiErrorBody {
  error: {
    message: string;
    type: string;
    param: string | null;
    /** Our stable error code (packages/core/src/errors), e.g. URL_HTTP_STATUS. */
    code: string;
    /** An extension for per-image failures: every failing input, not just the first one. */
    failures?: { index: number; code: string; message: string }[];
  };
}

export interface OpenAiHttpError {
  status: number;
  body: OpenAiErrorBody;
  /** True when retrying the same request can never succeed (the code is permanent). */
  permanent: boolean;
}

function errorType(status: number): string {
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** Any error, ours or express's, in OpenAI's error shape, with the status /score would give it. */
export function toOpenAiError(err: unknown): OpenAiHttpError {
  if (err instanceof RowFailuresError && err.failures.length > 0) {
    const first = err.failures[0]!;
    const more = err.failures.length - 1;
    const suffix = more > 0 ? ` (and ${more} more input${more > 1 ? 's' : ''})` : '';
    return {
      status: 400,
      permanent: true,
      body: {
        error: {
          message: `input[${first.row}]: ${first.message}${suffix}`,
          type: 'invalid_request_error',
          param: 'input',
          code: first.code,
          failures: err.failures.map((f) => ({ index: f.row, code: f.code, message: f.message })),
        },
      },
    };
  }
  // Same status, code and message (internal details hidden) as the rest of the API.
  const { status, payload } = toHttpError(err);
  const param = err instanceof EmbedpoolError ? err.details?.param : undefined;
  const permanent = err instanceof EmbedpoolError ? err.permanent : status < 500 && status !== 429;
  return {
    status,
    permanent,
    body: {
      error: {
        message: payload.message,
        type: errorType(status),
        param: typeof param === 'string' ? param : null,
        code: payload.code,
      },
    },
  };
}
