import { setTimeout as delay } from 'node:timers/promises';
import { EmbedpoolError } from '@embedpool/core/errors';
import cliProgress from 'cli-progress';
import { type Command, InvalidArgumentError } from 'commander';
import { EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, positiveInt, runAction } from './cli-support';

/** What the CLI reads of GET /v1/ingestions/{id} (see IngestionView in @embedpool/core/ingest). */
interface View {
  id: string;
  state: string;
  run?: number;
  source: { container: string; prefix: string };
  output: { container: string; prefix: string; format: string; manifest?: string };
  counts: {
    discovered: number;
    skipped: number;
    queued: number;
    done: number;
    failed: number;
    cancelled: number;
    carriedFailures: number;
  };
  listing: { done: boolean };
  throughput: { imagesPerSecond: number };
  etaSeconds: number | null;
  etaIsLowerBound: boolean;
  error?: { code: string; message: string };
  createdAt: string;
  finishedAt?: string;
}

const FINAL = new Set(['completed', 'partially_failed', 'failed', 'cancelled']);

export function defaultApiUrl(env: NodeJS.ProcessEnv = process.env): string {
  return env.EMBEDPOOL_URL ?? `http://127.0.0.1:${env.PORT && env.PORT !== '0' ? env.PORT : '8080'}`;
}

/** `container` or `container/some/prefix`. */
export function parseOutput(value: string): { container: string; prefix: string } {
  const [container, ...rest] = value.replace(/^\/+/, '').split('/');
  if (!container) throw new InvalidArgumentError('must be <container>[/<prefix>].');
  return { container, prefix: rest.join('/').replace(/\/+$/, '') };
}

function extList(value: string): string[] {
  const exts = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (exts.length === 0) throw new InvalidArgumentError('must be a comma-separated list like jpg,png.');
  return exts;
}

async function api<T>(base: string, path: string, init: RequestInit = {}): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${base.replace(/\/+$/, '')}${path}`, {
      ...init,
      headers: { 'content-type': 'application/json', ...(init.headers ?? {}) },
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    throw new EmbedpoolError('UNAVAILABLE', `cannot reach the API at ${base}: ${(err as Error).message}`);
  }
  const text = await res.text();
  const body = text ? (JSON.parse(text) as unknown) : undefined;
  if (!res.ok) {
    const e = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
    const err = new EmbedpoolError(
      res.status === 404 ? 'NOT_FOUND' : res.status >= 500 ? 'UNAVAILABLE' : 'BAD_REQUEST',
      `${e?.message ?? `HTTP ${res.status}`}${e?.code ? ` [${e.code}]` : ''}`,
    );
    throw err;
  }
  return body as T;
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** One progress line for logs and pipes. */
export function progressLine(v: View): string {
  const work = Math.max(0, v.counts.discovered - v.counts.skipped - v.counts.carriedFailures);
  const finished = v.counts.done + v.counts.failed - v.counts.carriedFailures + v.counts.cancelled;
  const pct = work > 0 ? ` (${((100 * finished) / work).toFixed(1)}%)` : '';
  const total = v.listing.done ? String(work) : `${work}+`;
  const eta = FINAL.has(v.state)
    ? ''
    : `, ETA ${v.etaIsLowerBound && v.etaSeconds !== null ? '>' : ''}${formatDuration(v.etaSeconds)}`;
  return (
    `${v.id} ${v.state}: ${finished}/${total} done${pct}, ${v.counts.failed} failed, ` +
    `${v.counts.skipped} skipped, ${v.throughput.imagesPerSecond} img/s${eta}`
  );
}

function summary(v: View, seconds: number): string {
  const where = v.output.manifest ? `; manifest ${v.output.container}/${v.output.manifest}` : '';
  const err = v.error ? `; ${v.error.code}: ${v.error.message}` : '';
  return (
    `${v.id} ${v.state}: ${v.counts.done} embedded, ${v.counts.failed} failed, ${v.counts.skipped} ` +
    `unchanged, ${v.counts.cancelled} cancelled in ${formatDuration(seconds)}${where}${err}\n`
  );
}

export function exitCodeFor(state: string): number {
  if (state === 'completed') return EXIT_OK;
  if (state === 'partially_failed') return EXIT_PARTIAL;
  return EXIT_FAILURE;
}

/**
 * Follows an ingestion until it finishes: a progress bar on a terminal, a plain line every `intervalMs`
 * otherwise (both on stderr, so stdout keeps only the summary). Resolves with the final view.
 */
export async function watchIngestion(
  base: string,
  id: string,
  opts: { intervalMs?: number; stream?: NodeJS.WriteStream; out?: NodeJS.WritableStream } = {},
): Promise<View> {
  const stream = opts.stream ?? process.stderr;
  const tty = stream.isTTY === true;
  const interval = opts.intervalMs ?? (tty ? 500 : 5_000);
  const started = Date.now();
  let bar: cliProgress.SingleBar | undefined;
  let failures = 0;
  let lastLine = 0;
  try {
    for (;;) {
      let v: View;
      try {
        v = await api<View>(base, `/v1/ingestions/${encodeURIComponent(id)}`);
        failures = 0;
      } catch (err) {
        // The API restarting must not end a watch of an hours-long ingestion.
        if (err instanceof EmbedpoolError && err.code === 'UNAVAILABLE' && ++failures < 60) {
          stream.write(`${id}: ${err.message}; retrying\n`);
          await delay(Math.max(interval, 1_000));
          continue;
        }
        throw err;
      }
      const final = FINAL.has(v.state);
      if (tty) {
        const work = Math.max(1, v.counts.discovered - v.counts.skipped - v.counts.carriedFailures);
        const finished = v.counts.done + v.counts.failed - v.counts.carriedFailures + v.counts.cancelled;
        const payload = {
          state: v.state,
          failed: v.counts.failed,
          skipped: v.counts.skipped,
          rate: v.throughput.imagesPerSecond,
          eta: `${v.etaIsLowerBound ? '>' : ''}${formatDuration(v.etaSeconds)}`,
        };
        if (!bar) {
          bar = new cliProgress.SingleBar(
            {
              stream,
              format:
                `${id} [{bar}] {value}/{total} | {rate} img/s | ETA {eta} | {failed} failed, ` +
                '{skipped} unchanged | {state}',
              hideCursor: true,
            },
            cliProgress.Presets.shades_classic,
          );
          bar.start(work, finished, payload);
        } else {
          bar.setTotal(work);
          bar.update(finished, payload);
        }
      } else if (final || Date.now() - lastLine >= interval || lastLine === 0) {
        stream.write(`${progressLine(v)}\n`);
        lastLine = Date.now();
      }
      if (final) {
        bar?.stop();
        bar = undefined;
        (opts.out ?? process.stdout).write(summary(v, (Date.now() - started) / 1000));
        return v;
      }
      await delay(tty ? Math.min(interval, 500) : Math.min(interval, 1_000));
    }
  } finally {
    bar?.stop();
  }
}

interface IngestOptions {
  container: string;
  prefix?: string;
  glob?: string;
  ext?: string[];
  output: { container: string; prefix: string };
  format: string;
  callback?: string;
  retryUnchangedFailures?: boolean;
  url: string;
  watch?: boolean;
  interval?: number;
  json?: boolean;
}

export function registerIngestCommands(program: Command): void {
  program
    .command('ingest')
    .description(
      'embed every image of an Azure Blob container into Parquet (or JSON lines) shards; incremental: ' +
        'a second run into the same output embeds only new and changed blobs',
    )
    .requiredOption('--container <name>', 'source container (in the deployment storage account)')
    .option('--prefix <prefix>', 'only blobs whose names start with this')
    .option('--glob <pattern>', 'only blobs whose whole name matches this glob, e.g. "**/*.jpg"')
    .option('--ext <list>', 'only these extensions, e.g. jpg,png', extList)
    .requiredOption('--output <container[/prefix]>', 'where shards, index and _manifest.json go', parseOutput)
    .option('--format <format>', 'parquet or jsonl', 'parquet')
    .option('--callback <url>', 'POST a signed notice here when it finishes')
    .option('--retry-unchanged-failures', 'try again blobs that failed before and have not changed')
    .option(
      '--url <url>',
      'API base URL (default: $EMBEDPOOL_URL or http://127.0.0.1:$PORT)',
      defaultApiUrl(),
    )
    .option('--watch', 'follow progress until it finishes; exit 0 completed, 2 with failures, 1 failed')
    .option('--interval <ms>', 'progress period (ms)', positiveInt)
    .option('--json', 'print the API answer as JSON')
    .action(
      runAction(async (opts: IngestOptions) => {
        if (opts.format !== 'parquet' && opts.format !== 'jsonl') {
          throw new EmbedpoolError('BAD_REQUEST', `--format must be parquet or jsonl, not ${opts.format}`);
        }
        const body = {
          source: {
            container: opts.container,
            ...(opts.prefix ? { prefix: opts.prefix } : {}),
            ...(opts.glob ? { glob: opts.glob } : {}),
            ...(opts.ext ? { extensions: opts.ext } : {}),
          },
          output: { ...opts.output, format: opts.format },
          ...(opts.callback ? { callbackUrl: opts.callback } : {}),
          ...(opts.retryUnchangedFailures ? { retryUnchangedFailures: true } : {}),
        };
        const created = await api<View>(opts.url, '/v1/ingestions', {
          method: 'POST',
          body: JSON.stringify(body),
        });
        if (!opts.watch) {
          process.stdout.write(opts.json ? `${JSON.stringify(created)}\n` : `${created.id}\n`);
          return EXIT_OK;
        }
        process.stderr.write(
          `${created.id}: ${opts.container}/${opts.prefix ?? ''} -> ${opts.output.container}/${opts.output.prefix} (${opts.format})\n`,
        );
        const final = await watchIngestion(opts.url, created.id, {
          ...(opts.interval ? { intervalMs: opts.interval } : {}),
        });
        if (opts.json) process.stdout.write(`${JSON.stringify(final)}\n`);
        return exitCodeFor(final.state);
      }),
    );

  const ingestions = program.command('ingestions').description('list, follow, cancel and retry ingestions');
  const urlOption = ['--url <url>', 'API base URL', defaultApiUrl()] as const;
  ingestions
    .command('list', { isDefault: true })
    .description('recent ingestions, newest first')
    .option(...urlOption)
    .option('--limit <n>', 'how many', positiveInt, 20)
    .option('--json', 'JSON lines')
    .action(
      runAction(async (opts: { url: string; limit: number; json?: boolean }) => {
        const page = await api<{ items: View[] }>(opts.url, `/v1/ingestions?limit=${opts.limit}`);
        for (const v of page.items) {
          process.stdout.write(
            opts.json
              ? `${JSON.stringify(v)}\n`
              : `${v.id}  ${v.state.padEnd(16)} ${v.source.container}/${v.source.prefix} -> ` +
                  `${v.output.container}/${v.output.prefix}  ${v.counts.done} done, ${v.counts.failed} failed, ` +
                  `${v.counts.skipped} unchanged  ${v.createdAt}\n`,
          );
        }
        return EXIT_OK;
      }),
    );
  ingestions
    .command('show <id>')
    .description('the state of one ingestion (--watch: follow it to the end)')
    .option(...urlOption)
    .option('--watch', 'follow progress until it finishes')
    .option('--interval <ms>', 'progress period (ms)', positiveInt)
    .action(
      runAction(async (id: string, opts: { url: string; watch?: boolean; interval?: number }) => {
        if (!opts.watch) {
          process.stdout.write(
            `${JSON.stringify(await api<View>(opts.url, `/v1/ingestions/${id}`), null, 2)}\n`,
          );
          return EXIT_OK;
        }
        const v = await watchIngestion(opts.url, id, {
          ...(opts.interval ? { intervalMs: opts.interval } : {}),
        });
        return exitCodeFor(v.state);
      }),
    );
  ingestions
    .command('failures <id>')
    .description('the failed blobs of an ingestion, with error codes (JSON lines)')
    .option(...urlOption)
    .action(
      runAction(async (id: string, opts: { url: string }) => {
        let cursor: string | undefined;
        do {
          const page = await api<{ items: unknown[]; next?: string }>(
            opts.url,
            `/v1/ingestions/${id}/failures?limit=1000${cursor ? `&cursor=${cursor}` : ''}`,
          );
          for (const f of page.items) process.stdout.write(`${JSON.stringify(f)}\n`);
          cursor = page.next;
        } while (cursor);
        return EXIT_OK;
      }),
    );
  ingestions
    .command('cancel <id>')
    .description('stop an ingestion; what it finished is kept and recorded in the manifest')
    .option(...urlOption)
    .action(
      runAction(async (id: string, opts: { url: string }) => {
        const v = await api<View>(opts.url, `/v1/ingestions/${id}`, { method: 'DELETE' });
        process.stdout.write(`${v.id} ${v.state}\n`);
        return EXIT_OK;
      }),
    );
  ingestions
    .command('retry-failed <id>')
    .description('queue the failed blobs of a finished ingestion again')
    .option(...urlOption)
    .option('--watch', 'follow progress until it finishes')
    .option('--interval <ms>', 'progress period (ms)', positiveInt)
    .action(
      runAction(async (id: string, opts: { url: string; watch?: boolean; interval?: number }) => {
        const v = await api<View & { requeued: number }>(opts.url, `/v1/ingestions/${id}/retry-failed`, {
          method: 'POST',
        });
        process.stderr.write(`${v.id}: ${v.requeued} blobs queued again\n`);
        if (!opts.watch) return EXIT_OK;
        const final = await watchIngestion(opts.url, id, {
          ...(opts.interval ? { intervalMs: opts.interval } : {}),
        });
        return exitCodeFor(final.state);
      }),
    );
}
