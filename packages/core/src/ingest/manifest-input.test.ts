import { describe, expect, it } from 'vitest';
import { csvColumn, manifestFormat, parseManifestLines, wholeLines } from './manifest-input';

describe('manifest input', () => {
  it('knows its format by extension', () => {
    expect(manifestFormat('a/b.JSONL')).toBe('jsonl');
    expect(manifestFormat('b.ndjson')).toBe('jsonl');
    expect(manifestFormat('b.csv')).toBe('csv');
    expect(manifestFormat('b.txt')).toBeUndefined();
  });

  it('JSON lines: strings and objects; URLs vs blob names; bad lines named with a reason', () => {
    const text = [
      '"photos/a.jpg"',
      '{"url": "https://example.com/x.png?sig=1"}',
      '{"blob_name": "/photos/b.jpg"}',
      '{"image_url": "http://h/y.jpg", "label": 3}',
      '"ftp://h/z.jpg"',
      '{"nope": 1}',
      'not json',
      '',
    ].join('\n');
    expect(parseManifestLines(text, 'jsonl')).toEqual([
      { kind: 'blob', name: 'photos/a.jpg' },
      { kind: 'url', url: 'https://example.com/x.png?sig=1' },
      { kind: 'blob', name: 'photos/b.jpg' },
      { kind: 'url', url: 'http://h/y.jpg' },
      { kind: 'invalid', line: '"ftp://h/z.jpg"', reason: 'only http(s) URLs' },
      { kind: 'invalid', line: '{"nope": 1}', reason: expect.stringContaining('an object with one of url') },
      { kind: 'invalid', line: 'not json', reason: 'not JSON' },
    ]);
  });

  it('CSV: a header naming the column, quoted cells, CRLF; without a header, the first column', () => {
    expect(csvColumn('label,url')).toEqual({ column: 1, header: true });
    expect(csvColumn('photos/a.jpg,cat')).toEqual({ column: 0, header: false });
    expect(
      parseManifestLines('"a, quoted",https://h/1.jpg\r\ncat,b/c.jpg\r\n', 'csv', { column: 1 }),
    ).toEqual([
      { kind: 'url', url: 'https://h/1.jpg' },
      { kind: 'blob', name: 'b/c.jpg' },
    ]);
    expect(parseManifestLines('only\n', 'csv', { column: 1 })).toEqual([
      { kind: 'invalid', line: 'only', reason: 'no column 1' },
    ]);
  });

  it('cuts pages at the last line end, and keeps a last line without one at the end of the blob', () => {
    const page = Buffer.from('a\nbb\nccc');
    expect(wholeLines(page, 100, false)).toEqual({ text: 'a\nbb\n', next: 105 });
    expect(wholeLines(page, 100, true)).toEqual({ text: 'a\nbb\nccc', next: 108 });
    expect(wholeLines(Buffer.from('no newline'), 0, false)).toBeUndefined();
  });
});
