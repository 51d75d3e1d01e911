import { setTimeout as delay } from 'node:timers/promises';
import { EmbedpoolError } from '@embedpool/core/errors';
import type { IngestionView } from '@embedpool/core/ingest';
import cliProgress from 'cli-progress';
import { type Command, InvalidArgumentError } from 'commander';
import { ApiClient, type ApiOptions, apiOptions, isTransientApiError } from './api-client';
import { EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, positiveInt, runAction } from './cli-support';

/** GET /v1/ingestions/{id}, as the API writes it. */
type View = IngestionView;

interface Failure {
  blob: string;
  etag: string;
  error: { code: string; message: string };
  permanent: boolean;
  carried?: boolean;
}

const FINAL = new Set(['completed', 'partially_failed', 'failed', 'cancelled']);

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

const viewPath = (id: string) => `/v1/ingestions/${encodeURIComponent(id)}`;

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
  const retry = v.retrying
    ? `; retrying ${v.retrying.step} (attempt ${v.retrying.attempt}/${v.retrying.attempts}): ${v.retrying.code}`
    : '';
  return (
    `${v.id} ${v.state}: ${finished}/${total} done${pct}, ${v.counts.failed} failed, ` +
    `${v.counts.skipped} skipped, ${v.throughput.imagesPerSecond} img/s${eta}${retry}`
  );
}

/** `ingestions show`: what an operator acts on, one fact a line. */
export function describeIngestion(v: View, failures: Failure[], more: boolean): string {
  const c = v.counts;
  const lines = [
    `id          ${v.id}${v.run !== undefined ? ` (run ${v.run} of the output)` : ''}`,
    `state       ${v.state}`,
    `source      ${v.source.container}/${v.source.prefix}`,
    `output      ${v.output.container}/${v.output.prefix} (${v.output.format})${v.output.manifest ? `, manifest ${v.output.manifest}` : ''}`,
    `counts      listed ${c.discovered}${v.listing.done ? '' : '+'}, queued ${c.queued}, embedded ${c.done}, ` +
      `skipped ${c.skipped}, failed ${c.failed}${c.carriedFailures ? ` (${c.carriedFailures} carried)` : ''}, ` +
      `cancelled ${c.cancelled}`,
    `throughput  ${v.throughput.imagesPerSecond} img/s`,
  ];
  if (!FINAL.has(v.state))
    lines.push(
      `eta         ${v.etaIsLowerBound && v.etaSeconds !== null ? '>' : ''}${formatDuration(v.etaSeconds)}`,
    );
  if (v.error) lines.push(`error       ${v.error.code}: ${v.error.message}`);
  if (v.retrying)
    lines.push(
      `retrying    ${v.retrying.step}, attempt ${v.retrying.attempt}/${v.retrying.attempts}: ${v.retrying.code}: ${v.retrying.message}`,
    );
  lines.push(`created     ${v.createdAt}${v.finishedAt ? `, finished ${v.finishedAt}` : ''}`);
  for (const f of failures)
    lines.push(
      `failed      ${f.blob}: ${f.error.code}: ${f.error.message}${f.permanent ? ' (permanent)' : ''}`,
    );
  if (more) lines.push(`            ... more: embedpool ingestions failures ${v.id}`);
  if (c.failed > 0 && FINAL.has(v.state))
    lines.push(`retry       embedpool ingest --retry-failed ${v.id} --watch`);
  return `${lines.join('\n')}\n`;
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
  client: ApiClient,
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
        v = await client.get<View>(viewPath(id));
        failures = 0;
      } catch (err) {
        // The API restarting must not end a watch of an hours-long ingestion.
        if (isTransientApiError(err) && ++failures < 60) {
          stream.write(`${id}: ${(err as Error).message}; retrying\n`);
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
        // The reason, where a script's log keeps it: stderr, one line.
        if (v.error && (v.state === 'failed' || v.state === 'cancelled'))
          stream.write(`embedpool: ingestion ${v.id} ${v.state}: ${v.error.code}: ${v.error.message}\n`);
        return v;
      }
      await delay(tty ? Math.min(interval, 500) : Math.min(interval, 1_000));
    }
  } finally {
    bar?.stop();
  }
}

interface IngestOptions extends ApiOptions {
  container?: string;
  prefix?: string;
  glob?: string;
  ext?: string[];
  manifest?: string;
  output?: { container: string; prefix: string };
  format: string;
  callback?: string;
  retryUnchangedFailures?: boolean;
  retryFailed?: string;
  watch?: boolean;
  interval?: number;
  json?: boolean;
}

interface WatchOptions extends ApiOptions {
  watch?: boolean;
  interval?: number;
}

async function follow(
  client: ApiClient,
  id: string,
  opts: WatchOptions & { json?: boolean },
): Promise<number> {
  const final = await watchIngestion(client, id, { ...(opts.interval ? { intervalMs: opts.interval } : {}) });
  if (opts.json) process.stdout.write(`${JSON.stringify(final)}\n`);
  return exitCodeFor(final.state);
}

/** POST .../retry-failed: only the failed blobs of a finished run, into the same output. */
async function retryFailed(client: ApiClient, id: string, opts: WatchOptions & { json?: boolean }) {
  const { body: v } = await client.request<View & { requeued: number }>(
    'POST',
    `${viewPath(id)}/retry-failed`,
  );
  process.stderr.write(`${v.id}: ${v.requeued} failed blobs queued again (round ${v.round ?? '?'})\n`);
  if (!opts.watch) {
    process.stdout.write(opts.json ? `${JSON.stringify(v)}\n` : `${v.id}\n`);
    return EXIT_OK;
  }
  return follow(client, id, opts);
}

function parseManifestSource(value: string): { container: string; name: string } {
  const { container, prefix } = parseOutput(value);
  if (!prefix) throw new InvalidArgumentError('must be <container>/<blob name> of a .jsonl or .csv listing.');
  return { container, name: prefix };
}

export function registerIngestCommands(program: Command): void {
  apiOptions(
    program
      .command('ingest')
      .description(
        'embed every image of an Azure Blob container (or of a manifest listing) into Parquet (or JSON ' +
          'lines) shards; incremental: a second run into the same output embeds only new and changed blobs',
      ),
  )
    .option('--container <name>', 'source container (in the deployment storage account)')
    .option('--prefix <prefix>', 'only blobs whose names start with this')
    .option('--glob <pattern>', 'only blobs whose whole name matches this glob, e.g. "**/*.jpg"')
    .option('--ext <list>', 'only these extensions, e.g. jpg,png', extList)
    .option(
      '--manifest <container/blob>',
      'take the blobs (names in --container) or http(s) URLs listed in this .jsonl or .csv blob instead of a listing',
    )
    .option('--output <container[/prefix]>', 'where shards, index and _manifest.json go', parseOutput)
    .option('--format <format>', 'parquet or jsonl', 'parquet')
    .option('--callback <url>', 'POST a signed notice here when it finishes')
    .option('--retry-unchanged-failures', 'try again blobs that failed before and have not changed')
    .option(
      '--retry-failed <id>',
      're-embed only the failed blobs of that finished ingestion, into its output',
    )
    .option('--watch', 'follow progress until it finishes; exit 0 completed, 2 with failures, 1 failed')
    .option('--interval <ms>', 'progress period (ms)', positiveInt)
    .option('--json', 'print the API answer as JSON')
    .action(runAction(startIngestion));

  const ingestions = program.command('ingestions').description('list, follow, cancel and retry ingestions');
  apiOptions(ingestions.command('list', { isDefault: true }).description('recent ingestions, newest first'))
    .option('--limit <n>', 'how many', positiveInt, 20)
    .option('--json', 'JSON lines')
    .action(runAction(listIngestions));
  apiOptions(
    ingestions
      .command('show <id>')
      .description(
        'the state of one ingestion: counts, throughput, ETA, error, first failures (--watch: follow it)',
      ),
  )
    .option('--watch', 'follow progress until it finishes')
    .option('--interval <ms>', 'progress period (ms)', positiveInt)
    .option('--json', "print the API's JSON as it is")
    .action(runAction(showIngestion));
  apiOptions(
    ingestions
      .command('failures <id>')
      .description('the failed blobs of an ingestion, with error codes (JSON lines, every page)'),
  )
    .option('--limit <n>', 'stop after this many', positiveInt)
    .action(runAction(printFailures));
  apiOptions(
    ingestions
      .command('cancel <id>')
      .description('stop an ingestion in any state that is not final; what it finished is kept and recorded'),
  )
    .option('--watch', 'follow it until it is cancelled')
    .option('--interval <ms>', 'progress period (ms)', positiveInt)
    .action(runAction(cancelIngestion));
  apiOptions(
    ingestions
      .command('retry-failed <id>')
      .description('queue the failed blobs of a finished ingestion again (same as ingest --retry-failed)'),
  )
    .option('--watch', 'follow progress until it finishes')
    .option('--interval <ms>', 'progress period (ms)', positiveInt)
    .action(runAction(async (id: string, opts: WatchOptions) => retryFailed(new ApiClient(opts), id, opts)));
}

/** `embedpool ingest`: queue an ingestion (or a retry of its failures), then print its id or follow it. */
async function startIngestion(opts: IngestOptions): Promise<number> {
  const client = new ApiClient(opts);
  if (opts.retryFailed) return retryFailed(client, opts.retryFailed, opts);
  if (!opts.output) throw new EmbedpoolError('BAD_REQUEST', '--output <container[/prefix]> is required');
  if (!opts.container && !opts.manifest)
    throw new EmbedpoolError('BAD_REQUEST', '--container (or --manifest) is required');
  if (opts.format !== 'parquet' && opts.format !== 'jsonl') {
    throw new EmbedpoolError('BAD_REQUEST', `--format must be parquet or jsonl, not ${opts.format}`);
  }
  const manifest = opts.manifest ? parseManifestSource(opts.manifest) : undefined;
  const body = {
    source: {
      container: opts.container ?? manifest!.container,
      ...(opts.prefix ? { prefix: opts.prefix } : {}),
      ...(opts.glob ? { glob: opts.glob } : {}),
      ...(opts.ext ? { extensions: opts.ext } : {}),
      ...(manifest ? { manifest } : {}),
    },
    output: { ...opts.output, format: opts.format },
    ...(opts.callback ? { callbackUrl: opts.callback } : {}),
    ...(opts.retryUnchangedFailures ? { retryUnchangedFailures: true } : {}),
  };
  const { body: created } = await client.request<View>('POST', '/v1/ingestions', { body });
  if (!opts.watch) {
    process.stdout.write(opts.json ? `${JSON.stringify(created)}\n` : `${created.id}\n`);
    return EXIT_OK;
  }
  const from = manifest
    ? `manifest ${manifest.container}/${manifest.name}`
    : `${body.source.container}/${opts.prefix ?? ''}`;
  process.stderr.write(
    `${created.id}: ${from} -> ${opts.output.container}/${opts.output.prefix} (${opts.format})\n`,
  );
  return follow(client, created.id, opts);
}

/** `embedpool ingestions list`: one line (or JSON line) per recent ingestion. */
async function listIngestions(opts: ApiOptions & { limit: number; json?: boolean }): Promise<number> {
  const client = new ApiClient(opts);
  const page = await client.get<{ items: View[] }>(`/v1/ingestions?limit=${opts.limit}`);
  for (const v of page.items) {
    const err = v.error ? `  ${v.error.code}` : '';
    const eta = FINAL.has(v.state)
      ? ''
      : `, ETA ${v.etaIsLowerBound && v.etaSeconds !== null ? '>' : ''}${formatDuration(v.etaSeconds)}`;
    process.stdout.write(
      opts.json
        ? `${JSON.stringify(v)}\n`
        : `${v.id}  ${v.state.padEnd(16)} ${v.source.container}/${v.source.prefix} -> ` +
            `${v.output.container}/${v.output.prefix}  listed ${v.counts.discovered}, queued ` +
            `${v.counts.queued}, embedded ${v.counts.done}, skipped ${v.counts.skipped}, failed ` +
            `${v.counts.failed}  ${v.throughput.imagesPerSecond} img/s${eta}${err}  ${v.createdAt}\n`,
    );
  }
  return EXIT_OK;
}

/** `embedpool ingestions show`: the state of one ingestion and its first failures. */
async function showIngestion(id: string, opts: WatchOptions & { json?: boolean }): Promise<number> {
  const client = new ApiClient(opts);
  if (opts.watch) return follow(client, id, opts);
  const v = await client.get<View>(viewPath(id));
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
    return EXIT_OK;
  }
  const page =
    v.counts.failed > 0
      ? await client.get<{ items: Failure[]; next?: string }>(`${viewPath(id)}/failures?limit=10`)
      : { items: [] };
  process.stdout.write(describeIngestion(v, page.items, page.next !== undefined));
  return EXIT_OK;
}

/** `embedpool ingestions failures`: every failed blob as a JSON line, page by page. */
async function printFailures(id: string, opts: ApiOptions & { limit?: number }): Promise<number> {
  const client = new ApiClient(opts);
  let cursor: string | undefined;
  let left = opts.limit ?? Number.POSITIVE_INFINITY;
  do {
    const size = Math.min(1000, left);
    const page = await client.get<{ items: unknown[]; next?: string }>(
      `${viewPath(id)}/failures?limit=${size}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    for (const f of page.items) process.stdout.write(`${JSON.stringify(f)}\n`);
    left -= page.items.length;
    cursor = page.next;
  } while (cursor && left > 0);
  return EXIT_OK;
}

/** `embedpool ingestions cancel`: cancel, and with --watch follow it to the end. */
async function cancelIngestion(id: string, opts: WatchOptions): Promise<number> {
  const client = new ApiClient(opts);
  const { body: v } = await client.request<View>('DELETE', viewPath(id));
  process.stdout.write(`${v.id} ${v.state}\n`);
  if (!opts.watch) return EXIT_OK;
  const final = await watchIngestion(client, id, {
    ...(opts.interval ? { intervalMs: opts.interval } : {}),
    out: process.stderr,
  });
  return final.state === 'cancelled' ? EXIT_OK : exitCodeFor(final.state);
}
