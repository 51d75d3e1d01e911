import { parse } from 'csv-parse/sync';

/**
 * An ingestion's input listing (`source.manifest`): a JSON lines or CSV blob naming blobs of the source
 * container or http(s) image URLs, one per line, as Azure ML batch endpoints and Ray Data take their
 * inputs. Read in byte pages cut at line ends, so a planner resumes from a byte offset.
 */
export type ManifestFormat = 'jsonl' | 'csv';

export type ManifestItem =
  | { kind: 'blob'; name: string }
  | { kind: 'url'; url: string }
  | { kind: 'invalid'; line: string; reason: string };

/** The column (CSV header) or key (JSON object) that names an item, in order of preference. */
const KEYS = ['url', 'image_url', 'blob', 'blob_name', 'name', 'path'] as const;

const URL_RE = /^https?:\/\//i;

export function manifestFormat(name: string): ManifestFormat | undefined {
  const lower = name.toLowerCase();
  if (lower.endsWith('.jsonl') || lower.endsWith('.ndjson')) return 'jsonl';
  if (lower.endsWith('.csv')) return 'csv';
  return undefined;
}

function item(value: string, line: string): ManifestItem {
  const v = value.trim();
  if (!v) return { kind: 'invalid', line, reason: 'empty' };
  if (URL_RE.test(v)) {
    if (!URL.canParse(v)) return { kind: 'invalid', line, reason: 'not a valid URL' };
    return { kind: 'url', url: v };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) return { kind: 'invalid', line, reason: 'only http(s) URLs' };
  if (v.length > 1024) return { kind: 'invalid', line, reason: 'a blob name has at most 1024 characters' };
  return { kind: 'blob', name: v.replace(/^\/+/, '') };
}

/** One JSON line: a string, or an object with one of KEYS. */
function jsonItem(line: string): ManifestItem {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return { kind: 'invalid', line, reason: 'not JSON' };
  }
  if (typeof v === 'string') return item(v, line);
  if (v && typeof v === 'object') {
    for (const k of KEYS) {
      const x = (v as Record<string, unknown>)[k];
      if (typeof x === 'string') return item(x, line);
    }
  }
  return { kind: 'invalid', line, reason: `a string or an object with one of ${KEYS.join(', ')}` };
}

/**
 * Which CSV column names the items: the first header cell that is one of KEYS (then the first line is the
 * header), else column 0 of every line.
 */
export function csvColumn(firstLine: string): { column: number; header: boolean } {
  const cells = (parse(firstLine, { relax_column_count: true, relax_quotes: true }) as string[][])[0] ?? [];
  const lower = cells.map((c) => c.trim().toLowerCase());
  for (const k of KEYS) {
    const i = lower.indexOf(k);
    if (i >= 0) return { column: i, header: true };
  }
  return { column: 0, header: false };
}

/** The items of whole lines (no partial last line), in order. */
export function parseManifestLines(
  text: string,
  format: ManifestFormat,
  csv: { column: number } = { column: 0 },
): ManifestItem[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim().length > 0);
  if (format === 'jsonl') return lines.map(jsonItem);
  return lines.map((line) => {
    let cells: string[];
    try {
      cells = (parse(line, { relax_column_count: true }) as string[][])[0] ?? [];
    } catch (err) {
      return { kind: 'invalid', line, reason: `not CSV: ${(err as Error).message}` };
    }
    const v = cells[csv.column];
    return v === undefined ? { kind: 'invalid', line, reason: `no column ${csv.column}` } : item(v, line);
  });
}

/**
 * Cuts a page of bytes read at `offset` at its last line end. `eof`: the page reaches the blob's end (the
 * rest is a last line without a newline). Returns the whole lines and the offset after them.
 */
export function wholeLines(
  page: Buffer,
  offset: number,
  eof: boolean,
): { text: string; next: number } | undefined {
  if (eof) return { text: page.toString('utf8'), next: offset + page.length };
  const end = page.lastIndexOf(0x0a);
  if (end < 0) return undefined;
  return { text: page.subarray(0, end + 1).toString('utf8'), next: offset + end + 1 };
}
