import { PassThrough } from 'node:stream';
import type { BlobClient, BlockBlobClient } from '@azure/storage-blob';
import { storageStatus } from '../blob/storage-errors';

/**
 * The output's index: one JSON array per line, sorted by blob name (see `compareNames`):
 * `["name","etag","<chunk id>"]` for a blob with a vector in shard `shards/<chunk id>.<format>`, or
 * `["name","etag",null,"CODE"]` for a blob that failed permanently with that etag. A run streams it beside
 * the listing (both in name order), so deciding what is unchanged costs no memory and no shard reads.
 */
export interface IndexEntry {
  name: string;
  etag: string;
  /** Chunk id of the shard holding the row; absent for a failure. */
  shard?: string;
  /** Error code of a permanent failure; absent for a row. */
  failure?: string;
}

export function encodeIndexLine(e: IndexEntry): string {
  return `${JSON.stringify(e.shard !== undefined ? [e.name, e.etag, e.shard] : [e.name, e.etag, null, e.failure ?? 'FAILED'])}\n`;
}

export function decodeIndexLine(line: string): IndexEntry {
  const a = JSON.parse(line) as unknown;
  if (!Array.isArray(a) || typeof a[0] !== 'string' || typeof a[1] !== 'string') {
    throw new Error(`malformed index line: ${line.slice(0, 200)}`);
  }
  return typeof a[2] === 'string'
    ? { name: a[0], etag: a[1], shard: a[2] }
    : { name: a[0], etag: a[1], failure: typeof a[3] === 'string' ? a[3] : 'FAILED' };
}

/**
 * Blob name order: by Unicode code point, which is UTF-8 byte order (what Redis uses for lexicographic
 * ranges and what the Blob service lists by for every name the two can tell apart). Plain `<` on JS strings
 * compares UTF-16 code units and differs for characters beyond the BMP.
 */
export function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (U+D800-DFFF) encode code points above U+FFFF: they must sort after U+E000-FFFF.
    if (x >= 0xd800) x = x <= 0xdfff ? x + 0x2000 : x - 0x800;
    if (y >= 0xd800) y = y <= 0xdfff ? y + 0x2000 : y - 0x800;
    return x - y;
  }
  return a.length - b.length;
}

export interface IndexLine {
  entry: IndexEntry;
  /** Byte offset of the line's start. */
  offset: number;
  /** Byte offset just past its newline. */
  next: number;
}

/**
 * Streams an index blob from a byte offset, line by line, with each line's offset (a planner checkpoints
 * the offset of the first line it has not consumed and resumes there). `etag` pins the version read.
 */
export async function* readIndexLines(
  blob: BlobClient,
  offset = 0,
  opts: { etag?: string; signal?: AbortSignal } = {},
): AsyncGenerator<IndexLine> {
  let res: Awaited<ReturnType<BlobClient['download']>>;
  try {
    res = await blob.download(offset, undefined, {
      maxRetryRequests: 5,
      ...(opts.signal ? { abortSignal: opts.signal } : {}),
      ...(opts.etag ? { conditions: { ifMatch: opts.etag } } : {}),
    });
  } catch (err) {
    // A range that starts at the end of the blob: nothing left to read.
    if (storageStatus(err) === 416) return;
    throw err;
  }
  const body = res.readableStreamBody;
  if (!body) return;
  let pos = offset;
  let carry: Buffer = Buffer.alloc(0);
  for await (const chunk of body as AsyncIterable<Buffer>) {
    const buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl >= 0; nl = buf.indexOf(10, start)) {
      if (nl > start) {
        const text = buf.toString('utf8', start, nl);
        yield { entry: decodeIndexLine(text), offset: pos + start, next: pos + nl + 1 };
      }
      start = nl + 1;
    }
    carry = Buffer.from(buf.subarray(start));
    pos += start;
  }
  if (carry.length > 0) {
    yield { entry: decodeIndexLine(carry.toString('utf8')), offset: pos, next: pos + carry.length };
  }
}

/**
 * A peekable cursor over an index (or over nothing, for an output's first run). Lines are parsed a network
 * chunk at a time, so stepping through millions of entries costs no promise or generator per line.
 */
export class IndexCursor {
  private body: AsyncIterator<Buffer> | undefined;
  private batch: IndexLine[] = [];
  private pos = 0;
  private carry: Buffer = Buffer.alloc(0);
  /** Byte offset of `carry`'s first byte. */
  private carryAt: number;
  private started = false;
  private ended = false;

  constructor(
    private readonly blob: BlobClient | undefined,
    private readonly startOffset: number,
    private readonly opts: { etag?: string; signal?: AbortSignal } = {},
  ) {
    this.carryAt = startOffset;
  }

  /** The next unconsumed entry, or undefined at the end. */
  async peek(): Promise<IndexEntry | undefined> {
    if (this.pos < this.batch.length) return this.batch[this.pos]!.entry;
    await this.refill();
    return this.batch[this.pos]?.entry;
  }

  async advance(): Promise<void> {
    if (this.pos >= this.batch.length) await this.refill();
    if (this.pos < this.batch.length) this.pos++;
  }

  /** Byte offset to resume from: the first line not yet consumed. */
  get offset(): number {
    return this.batch[this.pos]?.offset ?? this.carryAt;
  }

  private async open(): Promise<void> {
    this.started = true;
    if (!this.blob) {
      this.ended = true;
      return;
    }
    try {
      const res = await this.blob.download(this.startOffset, undefined, {
        maxRetryRequests: 5,
        ...(this.opts.signal ? { abortSignal: this.opts.signal } : {}),
        ...(this.opts.etag ? { conditions: { ifMatch: this.opts.etag } } : {}),
      });
      const body = res.readableStreamBody as AsyncIterable<Buffer> | undefined;
      if (body) this.body = body[Symbol.asyncIterator]();
      else this.ended = true;
    } catch (err) {
      // A range that starts at the end of the blob: nothing left to read.
      if (storageStatus(err) === 416) this.ended = true;
      else throw err;
    }
  }

  /** Parses the next network chunk's complete lines into a new batch (empty only at the end). */
  private async refill(): Promise<void> {
    if (!this.started) await this.open();
    this.batch = [];
    this.pos = 0;
    while (this.batch.length === 0 && !this.ended) {
      const r = await this.body!.next();
      if (r.done) {
        this.ended = true;
        if (this.carry.length > 0) {
          const end = this.carryAt + this.carry.length;
          this.batch.push({
            entry: decodeIndexLine(this.carry.toString('utf8')),
            offset: this.carryAt,
            next: end,
          });
          this.carry = Buffer.alloc(0);
          this.carryAt = end;
        }
        return;
      }
      const buf = this.carry.length ? Buffer.concat([this.carry, r.value]) : r.value;
      let start = 0;
      for (let nl = buf.indexOf(10, start); nl >= 0; nl = buf.indexOf(10, start)) {
        if (nl > start) {
          this.batch.push({
            entry: decodeIndexLine(buf.toString('utf8', start, nl)),
            offset: this.carryAt + start,
            next: this.carryAt + nl + 1,
          });
        }
        start = nl + 1;
      }
      this.carry = Buffer.from(buf.subarray(start));
      this.carryAt += start;
    }
  }

  async close(): Promise<void> {
    await this.body?.return?.();
  }
}

/**
 * Writes a blob as a stream of text (bounded memory: 4 MiB blocks, a few in flight), for index files of
 * any size. `close()` commits it; nothing is visible before.
 */
export class BlobTextWriter {
  private readonly pass = new PassThrough({ highWaterMark: 1 << 20 });
  private readonly upload: Promise<{ etag?: string }>;
  private failure: unknown;
  bytes = 0;
  lines = 0;

  constructor(blob: BlockBlobClient, contentType: string) {
    this.upload = blob
      .uploadStream(this.pass, 4 << 20, 4, { blobHTTPHeaders: { blobContentType: contentType } })
      .catch((err: unknown) => {
        this.failure = err;
        this.pass.destroy();
        throw err;
      });
    // Observed through close(); keeps an early failure from being an unhandled rejection meanwhile.
    this.upload.catch(() => {});
  }

  async write(text: string): Promise<void> {
    if (this.failure) throw this.failure;
    this.bytes += Buffer.byteLength(text);
    this.lines++;
    if (!this.pass.write(text)) {
      await new Promise<void>((resolve, reject) => {
        const done = () => {
          this.pass.off('drain', done);
          this.pass.off('close', done);
          if (this.failure) reject(this.failure);
          else resolve();
        };
        this.pass.on('drain', done);
        this.pass.on('close', done);
      });
    }
  }

  /** Gives up: nothing is committed (the staged blocks are discarded by the service). */
  abort(): void {
    const err = new Error('aborted');
    this.failure ??= err;
    this.pass.destroy(err);
  }

  async close(): Promise<{ etag: string | undefined; bytes: number; lines: number }> {
    this.pass.end();
    const res = await this.upload;
    return { etag: res.etag, bytes: this.bytes, lines: this.lines };
  }
}
