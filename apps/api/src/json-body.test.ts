import { describe, expect, it } from 'vitest';
import { parseJsonBytes, plainBytes } from './json-body';

const big = (c: string, n = 5000) => c.repeat(Math.ceil(n / c.length)).slice(0, n);
const b64 = Buffer.from(big('\u00ff\u0001abc', 6000), 'latin1').toString('base64');

describe('parseJsonBytes', () => {
  const same = [
    JSON.stringify({ input_data: { columns: ['image'], index: [0, 1], data: [[b64], [`${b64}==`]] } }),
    JSON.stringify({
      images: [
        { id: 'a', base64: b64 },
        { id: 'b', url: 'https://x.test/a.jpg' },
      ],
    }),
    JSON.stringify([b64, { [b64]: b64 }, 1, null, true]),
    // Long strings that need unescaping, or are not ASCII, are parsed in place.
    JSON.stringify({ a: big('a"b\\c\n'), b: big('é漢字'), c: `${b64}\u0000`, d: big('\\') }),
    JSON.stringify({ a: `${big('x')}\\`, b: b64 }),
    `  \r\n\t{ "a" : "${b64}" , "b":[ "${b64}"]}  `,
    JSON.stringify({ __proto__: 1, constructor: b64, 2: b64, 1: 'x' }),
    // What a lifted string's stand-in looks like, sent by a client: kept as sent.
    JSON.stringify({ a: '\u0000abc:0', b: b64 }),
    JSON.stringify({ small: 'short', n: -1.5e3 }),
  ];
  it.each(same.map((s, i) => [i, s]))('reads body %i as JSON.parse does', (_i, text) => {
    expect(parseJsonBytes(Buffer.from(text))).toEqual(JSON.parse(text));
  });

  it('skips a UTF-8 BOM and reads an empty body as {}', () => {
    const text = JSON.stringify({ a: b64 });
    expect(parseJsonBytes(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]))).toEqual({
      a: b64,
    });
    expect(parseJsonBytes(Buffer.alloc(0))).toEqual({});
    expect(parseJsonBytes(Buffer.from([0xef, 0xbb, 0xbf]))).toEqual({});
  });

  it.each([
    [`{"a": "${b64}"`],
    [`{"a": "${b64}", }`],
    [`{"a": "${b64}`],
    [`"${b64}"`],
    ['12'],
    ['   '],
    [`{"a": "${b64}" "b": 1}`],
    [`{"a": "${b64}\u0001"}`],
  ])('rejects what JSON.parse or strict mode rejects (%#)', (text) => {
    expect(() => parseJsonBytes(Buffer.from(text))).toThrow(SyntaxError);
  });

  it('finds a control character, a backslash or a non-ASCII byte at any position and alignment', () => {
    const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7f]*$/;
    // Inside a bigger buffer at every offset, so both the aligned words and the unaligned ends are tried.
    const pool = Buffer.alloc(64 + 40);
    for (let offset = 0; offset < 4; offset++) {
      for (let len = 0; len < 40; len++) {
        for (let at = -1; at < len; at++) {
          for (const bad of [0x00, 0x09, 0x1f, 0x5c, 0x80, 0xff, 0x20, 0x7f, 0x41]) {
            pool.fill(0x41);
            if (at >= 0) pool[offset + at] = bad;
            const text = pool.toString('latin1', offset, offset + len);
            expect(plainBytes(pool, offset, offset + len), `${offset} ${len} ${at} ${bad}`).toBe(
              PLAIN.test(text),
            );
          }
        }
      }
    }
  });
});
