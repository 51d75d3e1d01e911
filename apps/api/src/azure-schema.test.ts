import { EmbedpoolError } from '@embedpool/core/errors';
import { describe, expect, it } from 'vitest';
import { parseScoreRequest } from './azure-schema';
import { decodedLength } from './base64';
import { RowFailuresError, toHttpError } from './http-errors';
import { parseImageCell } from './image-input';

const limits = { maxImages: 4, maxImageBytes: 1024 };
const PNG_B64 = Buffer.from('\x89PNG\r\n\x1a\nfake image bytes', 'latin1').toString('base64');

function body(columns: string[], data: unknown[][], index?: unknown[]) {
  return { input_data: { columns, data, ...(index ? { index } : {}) } };
}

function rowFailures(fn: () => unknown): RowFailuresError {
  try {
    fn();
  } catch (err) {
    if (err instanceof RowFailuresError) return err;
    throw err;
  }
  throw new Error('expected RowFailuresError');
}

function requestError(fn: () => unknown): EmbedpoolError {
  try {
    fn();
  } catch (err) {
    if (err instanceof EmbedpoolError) return err;
    throw err;
  }
  throw new Error('expected EmbedpoolError');
}

describe('parseScoreRequest (Azure ML contract)', () => {
  it('accepts the model card sample shape: one image per row, in order', () => {
    const images = parseScoreRequest(
      body(['image'], [['https://example.com/a.png'], [PNG_B64]], [0, 1]),
      limits,
    );
    expect(images).toEqual([
      { kind: 'url', url: 'https://example.com/a.png' },
      { kind: 'base64', data: PNG_B64 },
    ]);
  });

  it('finds the image column by name and ignores extra columns', () => {
    const images = parseScoreRequest(
      body(
        ['id', 'image', 'note'],
        [
          [1, PNG_B64, null],
          ['x', 'http://example.com/b.jpg', { a: 1 }],
        ],
      ),
      limits,
    );
    expect(images.map((i) => i.kind)).toEqual(['base64', 'url']);
  });

  it('rejects a body without an image column', () => {
    const err = requestError(() => parseScoreRequest(body(['picture'], [[PNG_B64]]), limits));
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toMatch(/no "image" column/);
  });

  it('rejects a wrong shape with the path at fault', () => {
    const err = requestError(() =>
      parseScoreRequest({ input_data: { columns: ['image'], data: 'x' } }, limits),
    );
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toMatch(/input_data\.data/);
    expect(requestError(() => parseScoreRequest(undefined, limits)).message).toMatch(/JSON body/);
    expect(requestError(() => parseScoreRequest([1, 2], limits)).code).toBe('BAD_REQUEST');
  });

  it('rejects empty data', () => {
    const err = requestError(() => parseScoreRequest(body(['image'], []), limits));
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toMatch(/empty/);
  });

  it('rejects too many images', () => {
    const rows = Array.from({ length: 5 }, () => [PNG_B64]);
    const err = requestError(() => parseScoreRequest(body(['image'], rows), limits));
    expect(err.code).toBe('TOO_MANY_IMAGES');
    expect(err.message).toMatch(/5 images.*at most 4/);
  });

  it('rejects an index whose length differs from data', () => {
    const err = requestError(() => parseScoreRequest(body(['image'], [[PNG_B64]], [0, 1]), limits));
    expect(err.message).toMatch(/index has 2 entries but data has 1 rows/);
  });

  it('names a ragged row and a non-string cell, and reports every bad row at once', () => {
    const err = rowFailures(() =>
      parseScoreRequest(body(['image', 'id'], [[PNG_B64, 1], [PNG_B64], [42, 2], ['ftp://x/y', 3]]), limits),
    );
    expect(err.failures).toEqual([
      { row: 1, code: 'BAD_REQUEST', message: 'row has 1 cells but there are 2 columns' },
      { row: 2, code: 'BAD_REQUEST', message: expect.stringMatching(/must be a string.*number/) },
      { row: 3, code: 'URL_SCHEME_NOT_ALLOWED', message: expect.stringMatching(/ftp/) },
    ]);
    const http = toHttpError(err);
    expect(http.status).toBe(400);
    expect(http.payload).toMatchObject({ code: 'BAD_REQUEST', row: 1, failures: err.failures });
    expect(http.payload.message).toMatch(/^row 1: .*\(and 2 more rows\)$/);
  });

  it('rejects invalid base64 naming the row', () => {
    const err = rowFailures(() => parseScoreRequest(body(['image'], [[PNG_B64], ['not base64!']]), limits));
    expect(err.failures).toEqual([{ row: 1, code: 'INVALID_BASE64', message: expect.any(String) }]);
  });
});

describe('parseImageCell', () => {
  it('strips a data URI prefix', () => {
    expect(parseImageCell(`data:image/png;base64,${PNG_B64}`, 1024)).toEqual({
      kind: 'base64',
      data: PNG_B64,
    });
    expect(parseImageCell(`DATA:image/jpeg;name=a.jpg;base64,${PNG_B64}`, 1024)).toEqual({
      kind: 'base64',
      data: PNG_B64,
    });
  });

  it('refuses data URIs that are not base64 images', () => {
    expect(() => parseImageCell(`data:text/plain;base64,${PNG_B64}`, 1024)).toThrow(
      expect.objectContaining({ code: 'IMAGE_UNSUPPORTED_FORMAT' }),
    );
    expect(() => parseImageCell('data:image/png,rawbytes', 1024)).toThrow(
      expect.objectContaining({ code: 'INVALID_BASE64' }),
    );
  });

  it('accepts plain, unpadded, URL-safe and MIME-wrapped base64, returning it without whitespace', () => {
    expect(parseImageCell(PNG_B64, 1024)).toEqual({ kind: 'base64', data: PNG_B64 });
    expect(parseImageCell('AAAA', 1024)).toEqual({ kind: 'base64', data: 'AAAA' });
    expect(parseImageCell('AA', 1024)).toEqual({ kind: 'base64', data: 'AA' });
    expect(parseImageCell('-_8=', 1024)).toEqual({ kind: 'base64', data: '-_8=' });
    const wrapped = `${PNG_B64.slice(0, 8)}\n${PNG_B64.slice(8)}\r\n`;
    expect(parseImageCell(wrapped, 1024)).toEqual({ kind: 'base64', data: PNG_B64 });
  });

  it('rejects invalid base64', () => {
    for (const bad of ['abc$', 'A', 'AB=C', 'A===', 'AAAAA', '=AAA', 'AA=']) {
      expect(() => parseImageCell(bad, 1024), bad).toThrow(
        expect.objectContaining({ code: 'INVALID_BASE64' }),
      );
    }
    expect(() => parseImageCell('', 1024)).toThrow(expect.objectContaining({ code: 'IMAGE_EMPTY' }));
    expect(() => parseImageCell('  \n ', 1024)).toThrow(expect.objectContaining({ code: 'IMAGE_EMPTY' }));
  });

  it('computes the decoded size without decoding and enforces MAX_IMAGE_BYTES', () => {
    for (const n of [1, 2, 3, 4, 5, 100, 1024, 1025]) {
      const b64 = Buffer.alloc(n, 7).toString('base64');
      expect(decodedLength(b64)).toBe(n);
      expect(decodedLength(b64.replace(/=+$/, ''))).toBe(n);
    }
    const big = Buffer.alloc(1025, 1).toString('base64');
    expect(() => parseImageCell(big, 1024)).toThrow(expect.objectContaining({ code: 'IMAGE_TOO_LARGE' }));
    expect(() => parseImageCell(`data:image/png;base64,${big}`, 1024)).toThrow(
      expect.objectContaining({ code: 'IMAGE_TOO_LARGE' }),
    );
    expect(parseImageCell(Buffer.alloc(1024, 1).toString('base64'), 1024).kind).toBe('base64');
  });

  it('accepts http(s) URLs and applies the syntactic URL rules', () => {
    expect(parseImageCell('https://images.example.com/cat.jpg?x=1', 10)).toEqual({
      kind: 'url',
      url: 'https://images.example.com/cat.jpg?x=1',
    });
    expect(parseImageCell('  HTTP://Example.com/a b.png ', 10)).toEqual({
      kind: 'url',
      url: 'http://example.com/a%20b.png',
    });
    expect(() => parseImageCell('https://user:pw@example.com/a.png', 10)).toThrow(
      expect.objectContaining({ code: 'URL_CREDENTIALS_NOT_ALLOWED' }),
    );
    expect(() => parseImageCell('file:///etc/passwd', 10)).toThrow(
      expect.objectContaining({ code: 'URL_SCHEME_NOT_ALLOWED' }),
    );
    expect(() => parseImageCell('http://', 10)).toThrow(expect.objectContaining({ code: 'URL_INVALID' }));
    expect(() => parseImageCell(`https://example.com/${'a'.repeat(9000)}`, 10)).toThrow(
      expect.objectContaining({ code: 'URL_INVALID' }),
    );
  });
});
