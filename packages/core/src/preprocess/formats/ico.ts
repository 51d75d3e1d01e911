import { type BmpLayout, decodeBmpPixels, parseDib } from './bmp';
import { decodeFailed, type Raster, truncated } from './raster';

/**
 * ICO and CUR: a directory of entries, each a PNG or a headerless BMP (DIB) whose height counts the XOR
 * bitmap and the AND mask. The entry decoded is the one Pillow picks: for ICO the largest (width x height
 * from the directory, 0 meaning 256), then the deepest colour, then the last in the file; for CUR the first
 * entry strictly larger in both directory dimensions than every earlier one. The AND mask only makes
 * alpha, which the RGB conversion drops, so it is not read.
 */

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export type IcoEntry =
  | { kind: 'png'; format: 'ico'; offset: number }
  | { kind: 'dib'; format: 'ico' | 'cur'; offset: number; layout: BmpLayout };

const u16 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);
const u32 = (b: Uint8Array, o: number) =>
  (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;

export function icoKind(bytes: Uint8Array): 'ico' | 'cur' | undefined {
  if (bytes.length < 6 || bytes[0] !== 0 || bytes[1] !== 0 || bytes[3] !== 0) return undefined;
  if (u16(bytes, 4) === 0) return undefined;
  return bytes[2] === 1 ? 'ico' : bytes[2] === 2 ? 'cur' : undefined;
}

interface DirEntry {
  index: number;
  width: number;
  height: number;
  rawWidth: number;
  rawHeight: number;
  depth: number;
  offset: number;
}

/** Reads the directory and the chosen entry's header; allocates no pixels. */
export function parseIco(bytes: Uint8Array): IcoEntry {
  const format = icoKind(bytes);
  if (!format) throw decodeFailed('ico', 'not an ICO or CUR file');
  const count = u16(bytes, 4);
  if (6 + 16 * count > bytes.length) throw truncated(format);
  const entries: DirEntry[] = [];
  for (let i = 0; i < count; i++) {
    const s = 6 + 16 * i;
    const colors = bytes[s + 2]!;
    const bpp = u16(bytes, s + 6);
    entries.push({
      index: i,
      rawWidth: bytes[s]!,
      rawHeight: bytes[s + 1]!,
      width: bytes[s] || 256,
      height: bytes[s + 1] || 256,
      depth: bpp || (colors ? Math.ceil(Math.log2(colors)) : 256),
      offset: u32(bytes, s + 12),
    });
  }
  let chosen: DirEntry;
  if (format === 'cur') {
    chosen = entries[0]!;
    for (const e of entries.slice(1)) {
      if (e.rawWidth > chosen.rawWidth && e.rawHeight > chosen.rawHeight) chosen = e;
    }
  } else {
    // Pillow: sort by depth, then (stably) by area, then reverse the list.
    chosen = [...entries].sort(
      (a, b) => b.width * b.height - a.width * a.height || b.depth - a.depth || b.index - a.index,
    )[0]!;
  }
  if (chosen.offset < 6 + 16 * count || chosen.offset + 8 > bytes.length) {
    throw decodeFailed(format, `directory entry ${chosen.index} points outside the file`, {
      reason: 'entry_outside_file',
      offset: chosen.offset,
      bytes: bytes.length,
    });
  }
  if (format === 'ico' && PNG_MAGIC.every((v, i) => bytes[chosen.offset + i] === v)) {
    return { kind: 'png', format, offset: chosen.offset };
  }
  const layout = parseDib(bytes, chosen.offset, 0, format);
  // The DIB's height covers the XOR bitmap and the AND mask below it.
  const height = Math.trunc(layout.height / 2);
  if (height <= 0) throw decodeFailed(format, 'entry has no rows');
  return { kind: 'dib', format, offset: chosen.offset, layout: { ...layout, height } };
}

export function decodeIcoDib(bytes: Uint8Array, entry: IcoEntry, maxInputPixels: number): Raster {
  if (entry.kind !== 'dib') throw new TypeError('PNG entries are decoded as PNG');
  return decodeBmpPixels(bytes, entry.layout, maxInputPixels, entry.format);
}
