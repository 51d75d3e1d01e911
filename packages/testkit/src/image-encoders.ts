/**
 * Minimal writers for the formats of preprocess/formats, for tests: they turn known pixels (8-bit RGB or
 * grey, rows top to bottom) into BMP, ICO/CUR, PNM and TGA files in several of their variants, so a test
 * can check that decoding gives those pixels back. Written from the format specifications, independently
 * of the decoders.
 */

export interface Pixels {
  width: number;
  height: number;
  /** 1 = grey, 3 = RGB. */
  channels: 1 | 3;
  data: Uint8Array;
}

function rgbAt(p: Pixels, i: number): [number, number, number] {
  if (p.channels === 1) return [p.data[i]!, p.data[i]!, p.data[i]!];
  return [p.data[3 * i]!, p.data[3 * i + 1]!, p.data[3 * i + 2]!];
}

/** The distinct colours of `p` (at most `max`), and each pixel's index into them. */
export function toPalette(
  p: Pixels,
  max: number,
): { palette: [number, number, number][]; indices: Uint8Array } {
  const map = new Map<number, number>();
  const palette: [number, number, number][] = [];
  const indices = new Uint8Array(p.width * p.height);
  for (let i = 0; i < indices.length; i++) {
    const [r, g, b] = rgbAt(p, i);
    const key = (r << 16) | (g << 8) | b;
    let idx = map.get(key);
    if (idx === undefined) {
      idx = palette.length;
      if (idx >= max) throw new RangeError(`more than ${max} colours`);
      map.set(key, idx);
      palette.push([r, g, b]);
    }
    indices[i] = idx;
  }
  return { palette, indices };
}

/** Reduces `p` to at most `levels`^3 colours (each channel to `levels` values), for palette formats. */
export function posterize(p: Pixels, levels: number): Pixels {
  const step = 255 / (levels - 1);
  const data = p.data.map((v) => Math.round(Math.round(v / step) * step));
  return { ...p, data };
}

export interface BmpOptions {
  bits: 1 | 4 | 8 | 16 | 24 | 32;
  /** RLE8 (8-bit) or RLE4 (4-bit). */
  rle?: boolean;
  topDown?: boolean;
  /** 32-bit: BI_BITFIELDS with a BGRA mask in a v4 header. */
  bitfields?: boolean;
}

/** The DIB (header, palette, pixels) without the 14-byte file header. `rowsFactor` 2 for icons. */
export function encodeDib(p: Pixels, o: BmpOptions, rowsFactor = 1): Uint8Array {
  const { width, height } = p;
  const paletted = o.bits <= 8;
  const { palette, indices } = paletted
    ? toPalette(p, 2 ** o.bits)
    : { palette: [], indices: new Uint8Array() };
  const headerSize = o.bitfields ? 108 : 40;
  const colors = paletted ? 2 ** o.bits : 0;
  const rows: Uint8Array[] = [];
  const stride = ((width * o.bits + 31) >>> 3) & ~3;
  const order = Array.from({ length: height }, (_, k) => (o.topDown ? k : height - 1 - k));
  let pixelData: Uint8Array;
  if (o.rle) {
    pixelData = encodeRle(indices, width, order, o.bits === 4);
  } else {
    for (const y of order) {
      const row = new Uint8Array(stride);
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        if (o.bits === 8) row[x] = indices[i]!;
        else if (o.bits === 4) row[x >> 1]! |= indices[i]! << (x & 1 ? 0 : 4);
        else if (o.bits === 1) row[x >> 3]! |= indices[i]! << (7 - (x & 7));
        else {
          const [r, g, b] = rgbAt(p, i);
          if (o.bits === 16) {
            const v = ((r >> 3) << 10) | ((g >> 3) << 5) | (b >> 3);
            row[2 * x] = v & 255;
            row[2 * x + 1] = v >> 8;
          } else {
            const s = o.bits === 24 ? 3 : 4;
            row[s * x] = b;
            row[s * x + 1] = g;
            row[s * x + 2] = r;
            if (s === 4) row[s * x + 3] = 255;
          }
        }
      }
      rows.push(row);
    }
    pixelData = Buffer.concat(rows);
  }
  const header = Buffer.alloc(headerSize);
  header.writeUInt32LE(headerSize, 0);
  header.writeInt32LE(width, 4);
  header.writeInt32LE((o.topDown ? -height : height) * rowsFactor, 8);
  header.writeUInt16LE(1, 12);
  header.writeUInt16LE(o.bits, 14);
  header.writeUInt32LE(o.rle ? (o.bits === 8 ? 1 : 2) : o.bitfields ? 3 : 0, 16);
  header.writeUInt32LE(pixelData.length, 20);
  header.writeUInt32LE(colors, 32);
  if (o.bitfields) {
    header.writeUInt32LE(0x00ff0000, 40);
    header.writeUInt32LE(0x0000ff00, 44);
    header.writeUInt32LE(0x000000ff, 48);
    header.writeUInt32LE(0xff000000, 52);
  }
  const pal = Buffer.alloc(colors * 4);
  palette.forEach(([r, g, b], i) => {
    pal[4 * i] = b;
    pal[4 * i + 1] = g;
    pal[4 * i + 2] = r;
  });
  // Icons carry an AND mask after the XOR bitmap: all zero (opaque).
  const mask = rowsFactor === 2 ? Buffer.alloc((((width + 31) >>> 5) << 2) * height) : Buffer.alloc(0);
  return Buffer.concat([header, pal, pixelData, mask]);
}

function encodeRle(indices: Uint8Array, width: number, order: number[], rle4: boolean): Uint8Array {
  const out: number[] = [];
  for (const y of order) {
    let x = 0;
    while (x < width) {
      const v = indices[y * width + x]!;
      let run = 1;
      if (rle4) {
        // Runs of one index (both nibbles equal).
        while (x + run < width && run < 254 && indices[y * width + x + run] === v) run++;
        out.push(run, (v << 4) | v);
      } else {
        while (x + run < width && run < 255 && indices[y * width + x + run] === v) run++;
        if (run >= 2 || width - x < 3) {
          out.push(run, v);
        } else {
          // An absolute run of at least 3 literals, padded to a 16-bit boundary.
          let n = 3;
          while (x + n < width && n < 255 && indices[y * width + x + n] !== indices[y * width + x + n - 1])
            n++;
          out.push(0, n, ...indices.subarray(y * width + x, y * width + x + n));
          if (n % 2) out.push(0);
          run = n;
        }
      }
      x += run;
    }
    out.push(0, 0);
  }
  out.push(0, 1);
  return Uint8Array.from(out);
}

export function encodeBmp(p: Pixels, o: BmpOptions): Uint8Array {
  const dib = encodeDib(p, o);
  const colors = o.bits <= 8 ? 2 ** o.bits : 0;
  const head = Buffer.alloc(14);
  head.write('BM', 0, 'latin1');
  head.writeUInt32LE(14 + dib.length, 2);
  head.writeUInt32LE(14 + Buffer.from(dib.buffer, dib.byteOffset, 4).readUInt32LE(0) + colors * 4, 10);
  return Buffer.concat([head, dib]);
}

/** ICO (type 1) or CUR (type 2) from entries that are DIBs (made here) or PNG files. */
export function encodeIco(
  entries: { width: number; height: number; bits: number; data: Uint8Array }[],
  type: 1 | 2 = 1,
): Uint8Array {
  const dir = Buffer.alloc(6 + 16 * entries.length);
  dir.writeUInt16LE(type, 2);
  dir.writeUInt16LE(entries.length, 4);
  let offset = dir.length;
  entries.forEach((e, i) => {
    const s = 6 + 16 * i;
    dir[s] = e.width >= 256 ? 0 : e.width;
    dir[s + 1] = e.height >= 256 ? 0 : e.height;
    dir.writeUInt16LE(1, s + 4);
    dir.writeUInt16LE(e.bits, s + 6);
    dir.writeUInt32LE(e.data.length, s + 8);
    dir.writeUInt32LE(offset, s + 12);
    offset += e.data.length;
  });
  return Buffer.concat([dir, ...entries.map((e) => e.data)]);
}

/** P1-P6; `maxval` above 255 writes 16-bit samples (scaled from 8 bits as v * 257 when 65535). */
export function encodePnm(p: Pixels, kind: 1 | 2 | 3 | 4 | 5 | 6, maxval = 255): Uint8Array {
  const { width, height } = p;
  const bilevel = kind === 1 || kind === 4;
  const colour = kind === 3 || kind === 6;
  const head = `P${kind}\n# made by a test\n${width} ${height}\n${bilevel ? '' : `${maxval}\n`}`;
  const n = width * height;
  const sample = (i: number, c: number) => {
    const [r, g, b] = rgbAt(p, i);
    const v = colour ? [r, g, b][c]! : p.channels === 1 ? p.data[i]! : r;
    return Math.round((v * maxval) / 255);
  };
  if (kind === 1 || kind === 2 || kind === 3) {
    const tokens: string[] = [];
    for (let i = 0; i < n; i++) {
      if (kind === 1) tokens.push(sample(i, 0) < 128 ? '1' : '0');
      else for (let c = 0; c < (colour ? 3 : 1); c++) tokens.push(String(sample(i, c)));
    }
    return Buffer.from(head + tokens.join(' ') + '\n', 'latin1');
  }
  if (kind === 4) {
    const stride = Math.ceil(width / 8);
    const body = Buffer.alloc(stride * height);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++)
        if (sample(y * width + x, 0) < 128) body[y * stride + (x >> 3)]! |= 0x80 >> (x & 7);
    }
    return Buffer.concat([Buffer.from(head, 'latin1'), body]);
  }
  const bands = colour ? 3 : 1;
  const wide = maxval > 255;
  const body = Buffer.alloc(n * bands * (wide ? 2 : 1));
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < bands; c++) {
      const v = sample(i, c);
      if (wide) body.writeUInt16BE(v, 2 * (i * bands + c));
      else body[i * bands + c] = v;
    }
  }
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

export interface TgaOptions {
  /** 2 = true colour, 3 = grey, 1 = colour-mapped; RLE adds 8. */
  type: 1 | 2 | 3;
  rle?: boolean;
  depth?: 24 | 32 | 8;
  topDown?: boolean;
}

export function encodeTga(p: Pixels, o: TgaOptions): Uint8Array {
  const { width, height } = p;
  const depth = o.type === 2 ? (o.depth ?? 24) : 8;
  const { palette, indices } =
    o.type === 1
      ? toPalette(p, 256)
      : { palette: [] as [number, number, number][], indices: new Uint8Array() };
  const head = Buffer.alloc(18);
  head[1] = o.type === 1 ? 1 : 0;
  head[2] = o.type + (o.rle ? 8 : 0);
  if (o.type === 1) {
    head.writeUInt16LE(palette.length, 5);
    head[7] = 24;
  }
  head.writeUInt16LE(width, 12);
  head.writeUInt16LE(height, 14);
  head[16] = depth;
  head[17] = (o.topDown ? 0x20 : 0) | (depth === 32 ? 8 : 0);
  const map = Buffer.alloc(palette.length * 3);
  palette.forEach(([r, g, b], i) => {
    map[3 * i] = b;
    map[3 * i + 1] = g;
    map[3 * i + 2] = r;
  });
  const pixel = (i: number): number[] => {
    if (o.type === 1) return [indices[i]!];
    if (o.type === 3) return [p.channels === 1 ? p.data[i]! : rgbAt(p, i)[0]];
    const [r, g, b] = rgbAt(p, i);
    return depth === 32 ? [b, g, r, 255] : [b, g, r];
  };
  const rows: number[][][] = [];
  for (let k = 0; k < height; k++) {
    const y = o.topDown ? k : height - 1 - k;
    rows.push(Array.from({ length: width }, (_, x) => pixel(y * width + x)));
  }
  const body: number[] = [];
  if (!o.rle) {
    for (const row of rows) for (const px of row) body.push(...px);
  } else {
    // Runs of equal pixels as repeat packets, everything else as literal packets (up to 128 each),
    // never across a row (TGA 2.0; Pillow refuses packets that cross rows).
    const same = (a: number[], b: number[]) => a.every((v, i) => v === b[i]);
    for (const row of rows) {
      let i = 0;
      while (i < row.length) {
        let run = 1;
        while (i + run < row.length && run < 128 && same(row[i + run]!, row[i]!)) run++;
        if (run > 1) {
          body.push(0x80 | (run - 1), ...row[i]!);
          i += run;
        } else {
          let n = 1;
          while (i + n < row.length && n < 128 && !same(row[i + n]!, row[i + n - 1]!)) n++;
          body.push(n - 1, ...row.slice(i, i + n).flat());
          i += n;
        }
      }
    }
  }
  return Buffer.concat([head, map, Uint8Array.from(body)]);
}
