/**
 * `embedpool submit` and `embedpool status`: clients of a running API's job routes (/v1/jobs). They need
 * nothing but the API's URL: no Redis, no model. Human-readable lines go to stderr; stdout carries data
 * (the job id, the result lines, or `status --json`), so both compose in scripts.
 */
import { readFile } from 'node:fs/promises';
import { EmbedpoolError } from '@embedpool/core/errors';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { ApiClient, ApiError, type ApiOptions, apiOptions, isTransientApiError } from './api-client';
import { EXIT_OK, EXIT_PARTIAL, positiveInt, runAction } from './cli-support';
import { type LineSink, openLineSink } from './output';

const FINAL_STATES = new Set(['completed', 'partially_failed', 'failed', 'cancelled']);
const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:-]{1,128}$/;
const MAX_ID_LENGTH = 256;
// Polling: start quickly (small jobs finish in well under a second), back off to a bounded interval.
const POLL_FIRST_MS = 200;
const POLL_MAX_MS = 5_000;
const POLL_FACTOR = 1.5;
/** Consecutive failed polls (API restarting, Redis blip) tolerated while waiting. */
const POLL_MAX_ERRORS = 5;
const SUBMIT_TIMEOUT_MS = 300_000;
const EXIT_INTERRUPTED = 130;

export type OutputSpec =
  | { type: 'inline' }
  | { type: 'blob'; container: string; path?: string }
  | { type: 'callback'; url: string };

/** `inline` | `blob:<container>[/<path template>]` | `callback:<url>`; commander parser for --output. */
export function parseOutputSpec(value: string): OutputSpec {
  if (value === 'inline') return { type: 'inline' };
  if (value.startsWith('blob:')) {
    const rest = value.slice('blob:'.length);
    const slash = rest.indexOf('/');
    const container = slash < 0 ? rest : rest.slice(0, slash);
    const path = slash < 0 ? undefined : rest.slice(slash + 1);
    if (!container)
      throw new InvalidArgumentError('blob: needs a container, e.g. blob:embeddings/{date}/{jobId}.');
    if (path === '') throw new InvalidArgumentError('blob: the path template after the container is empty.');
    return path === undefined ? { type: 'blob', container } : { type: 'blob', container, path };
  }
  if (value.startsWith('callback:')) {
    const url = value.slice('callback:'.length);
    if (!isHttpUrl(url))
      throw new InvalidArgumentError('callback: needs an http(s) URL, e.g. callback:https://host/hook.');
    return { type: 'callback', url };
  }
  throw new InvalidArgumentError('must be inline, blob:<container>[/<path template>] or callback:<url>.');
}

function isHttpUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const { protocol } = new URL(value);
  return protocol === 'http:' || protocol === 'https:';
}

function priority(value: string): number {
  const n = positiveInt(value);
  if (n > 1000) throw new InvalidArgumentError('must be 1 (runs first) .. 1000.');
  return n;
}

function idempotencyKey(value: string): string {
  if (!IDEMPOTENCY_KEY.test(value)) throw new InvalidArgumentError('must be 1-128 of [A-Za-z0-9._:-].');
  return value;
}

// ---- HTTP --------------------------------------------------------------------------------------------------

interface JobView {
  id: string;
  state: string;
  counts: { total: number; succeeded: number; failed: number };
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  output: {
    type: string;
    container?: string;
    path?: string;
    npy?: boolean;
    url?: string;
    callbackUrl?: string;
  };
  location?: { type: string; resultPath?: string; container?: string; blobs?: string[]; url?: string };
  delivery?: {
    state: string;
    url: string;
    attempts: number;
    lastError?: string;
    lastStatus?: number;
    deliveredAt?: number;
  };
  error?: { code: string; message: string };
  model?: string;
  dim?: number;
  items: { id: string; status: string; error?: { code: string; message: string } }[];
}

type ResultItem = { id: string; image_features?: number[]; error?: { code: string; message: string } };

function getJob(client: ApiClient, id: string): Promise<{ status: number; body: JobView }> {
  return client.request<JobView>('GET', `/v1/jobs/${encodeURIComponent(id)}`);
}

const transient = isTransientApiError;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const say = (line: string) => process.stderr.write(`${line}\n`);

// ---- submit ------------------------------------------------------------------------------------------------

interface SubmitOptions extends ApiOptions {
  output: OutputSpec;
  normalize?: boolean;
  priority?: number;
  idempotencyKey?: string;
  wait?: boolean;
  waitTimeout?: number;
  out?: string;
}

type JobImage = { id: string; url: string } | { id: string; base64: string };

/** http(s) arguments go as URLs, anything else is a local file sent as base64. Ids: the argument as given. */
async function readInputs(inputs: string[]): Promise<JobImage[]> {
  const seen = new Set<string>();
  const unreadable: string[] = [];
  const images = await Promise.all(
    inputs.map(async (input, index): Promise<JobImage | undefined> => {
      // A duplicate or an over-long argument still needs a unique id; the index keeps it traceable.
      const id = input.length <= MAX_ID_LENGTH && !seen.has(input) ? input : `#${index}`;
      seen.add(id);
      if (/^https?:\/\//i.test(input)) return { id, url: input };
      try {
        return { id, base64: (await readFile(input)).toString('base64') };
      } catch (err) {
        unreadable.push(`${input} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
        return undefined;
      }
    }),
  );
  if (unreadable.length > 0) {
    throw new EmbedpoolError('BAD_REQUEST', `cannot read ${unreadable.join(', ')}; nothing was submitted`);
  }
  return images as JobImage[];
}

function seconds(from?: string, to?: string): string {
  if (!from || !to) return '';
  return ` in ${((Date.parse(to) - Date.parse(from)) / 1000).toFixed(1)} s`;
}

/** Polls the job with a bounded backoff until it is final; says each state change on stderr. */
async function waitForJob(client: ApiClient, id: string, timeoutS: number | undefined): Promise<JobView> {
  const deadline = timeoutS === undefined ? Number.POSITIVE_INFINITY : Date.now() + timeoutS * 1000;
  let delay = POLL_FIRST_MS;
  let errors = 0;
  let last = '';
  for (;;) {
    let job: JobView | undefined;
    try {
      job = (await getJob(client, id)).body;
      errors = 0;
    } catch (err) {
      if (!transient(err) || ++errors > POLL_MAX_ERRORS) throw err;
      say(`embedpool: ${(err as Error).message}; retrying`);
    }
    if (job) {
      const now = `${job.state} ${job.counts.succeeded + job.counts.failed}/${job.counts.total}`;
      if (now !== last)
        say(`job ${id}: ${job.state} (${job.counts.succeeded + job.counts.failed}/${job.counts.total} done)`);
      last = now;
      if (FINAL_STATES.has(job.state)) return job;
    }
    if (Date.now() + delay > deadline) {
      throw new EmbedpoolError('TIMEOUT', `job ${id} is not finished after ${timeoutS} s; it keeps running`);
    }
    await sleep(delay);
    delay = Math.min(POLL_MAX_MS, Math.round(delay * POLL_FACTOR));
  }
}

/** The result lines of a finished inline job, in submission order. */
async function resultLines(client: ApiClient, job: JobView): Promise<ResultItem[]> {
  if (job.state === 'completed' || job.state === 'partially_failed') {
    const { body } = await client.request<{ items: ResultItem[] }>(
      'GET',
      `/v1/jobs/${encodeURIComponent(job.id)}/result`,
      { timeoutMs: SUBMIT_TIMEOUT_MS },
    );
    return body.items.map((i) =>
      i.error ? { id: i.id, error: i.error } : { id: i.id, image_features: i.image_features ?? [] },
    );
  }
  // A failed job has no result: every image gets its own error, or the job's.
  const jobError = job.error ?? { code: 'INTERNAL', message: `the job ${job.state}` };
  return job.items.map((i) => ({ id: i.id, error: i.error ?? jobError }));
}

function describeOutput(job: JobView, base: string): string[] {
  const out: string[] = [];
  const loc = job.location;
  if (loc?.type === 'inline' && loc.resultPath) out.push(`result    ${base}${loc.resultPath}`);
  else if (loc?.type === 'blob') {
    out.push(`blobs     container ${loc.container}:`);
    for (const b of loc.blobs ?? []) out.push(`            ${b}`);
  } else if (loc?.type === 'callback') out.push(`callback  ${loc.url}`);
  const d = job.delivery;
  if (d) {
    const parts = [`${d.state}, ${d.attempts} attempt(s)`];
    if (d.lastStatus !== undefined) parts.push(`last status ${d.lastStatus}`);
    if (d.lastError) parts.push(`last error: ${d.lastError}`);
    if (d.deliveredAt) parts.push(`at ${new Date(d.deliveredAt).toISOString()}`);
    out.push(`delivery  ${d.url}: ${parts.join(', ')}`);
  }
  return out;
}

function summary(job: JobView, base: string): string[] {
  const c = job.counts;
  const model = job.model ? ` (model ${job.model}${job.dim ? `, dim ${job.dim}` : ''})` : '';
  const lines = [
    `job ${job.id} ${job.state}${seconds(job.createdAt, job.finishedAt)}: ${c.succeeded} succeeded, ` +
      `${c.failed} failed of ${c.total}${model}`,
  ];
  if (job.error) lines.push(`error     ${job.error.code}: ${job.error.message}`);
  const failed = job.items.filter((i) => i.error);
  for (const i of failed.slice(0, 10)) lines.push(`failed    ${i.id}: ${i.error!.code}: ${i.error!.message}`);
  if (failed.length > 10) lines.push(`          ... and ${failed.length - 10} more`);
  return [...lines, ...describeOutput(job, base)];
}

/** Ctrl-C while waiting: the job is not ours to stop; say how to find it again, drop a partial --out. */
function onInterrupt(id: string, sink: () => LineSink | undefined): () => void {
  const handler = () => {
    sink()?.abortSync();
    say(`\nembedpool: stopped waiting; job ${id} keeps running: embedpool status ${id}`);
    process.exit(EXIT_INTERRUPTED);
  };
  process.on('SIGINT', handler);
  return () => process.off('SIGINT', handler);
}

async function submit(inputs: string[], opts: SubmitOptions): Promise<number> {
  const client = new ApiClient(opts);
  if (opts.out !== undefined && !opts.wait) throw new EmbedpoolError('BAD_REQUEST', '--out needs --wait');
  if (opts.out !== undefined && opts.output.type !== 'inline') {
    throw new EmbedpoolError('BAD_REQUEST', `--out applies to inline output only, not ${opts.output.type}`);
  }
  const images = await readInputs(inputs);
  const body = {
    images,
    ...(opts.normalize ? { normalize: true } : {}),
    ...(opts.priority !== undefined ? { priority: opts.priority } : {}),
    output: opts.output,
  };
  let accepted: { status: number; body: { id: string; state: string; idempotent?: boolean } };
  try {
    accepted = await client.request('POST', '/v1/jobs', {
      body,
      headers: opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : {},
      timeoutMs: SUBMIT_TIMEOUT_MS,
    });
  } catch (err) {
    // Name each refused image by its argument, not just its index.
    if (err instanceof ApiError) {
      for (const f of err.failures) say(`  ${inputs[f.row] ?? `#${f.row}`}: ${f.code}: ${f.message}`);
    }
    throw err;
  }
  const { id, state } = accepted.body;
  const statusUrl = `${client.base}/v1/jobs/${encodeURIComponent(id)}`;
  if (accepted.body.idempotent) {
    say(`job ${id} was already submitted with this Idempotency-Key (${state}): ${statusUrl}`);
  } else {
    say(`job ${id} ${state} (${images.length} image${images.length === 1 ? '' : 's'}): ${statusUrl}`);
  }
  if (!opts.wait) {
    process.stdout.write(`${id}\n`);
    return EXIT_OK;
  }

  let sink: LineSink | undefined;
  const dispose = onInterrupt(id, () => sink);
  try {
    const job = await waitForJob(client, id, opts.waitTimeout);
    if (job.output.type === 'inline' && job.state !== 'cancelled') {
      const lines = await resultLines(client, job);
      sink = await openLineSink(opts.out);
      try {
        for (const line of lines) await sink.write(`${JSON.stringify(line)}\n`);
        await sink.commit();
      } catch (err) {
        await sink.abort();
        throw err;
      }
    }
    for (const line of summary(job, client.base)) say(line);
    if (opts.out !== undefined && job.output.type === 'inline' && job.state !== 'cancelled') {
      say(`results   ${opts.out}`);
    }
    return job.state === 'completed' ? EXIT_OK : EXIT_PARTIAL;
  } finally {
    dispose();
  }
}

// ---- status ------------------------------------------------------------------------------------------------

function describeJob(job: JobView, base: string): string {
  const c = job.counts;
  const o = job.output;
  const output =
    o.type === 'blob'
      ? `blob container=${o.container} path=${o.path}${o.npy ? ' npy' : ''}${o.callbackUrl ? ` callback=${o.callbackUrl}` : ''}`
      : o.type === 'callback'
        ? `callback ${o.url}`
        : o.type;
  const lines = [
    `id        ${job.id}`,
    `state     ${job.state}`,
    `images    ${c.total} total, ${c.succeeded} succeeded, ${c.failed} failed`,
    `created   ${job.createdAt}`,
  ];
  if (job.startedAt) lines.push(`started   ${job.startedAt}`);
  if (job.finishedAt) lines.push(`finished  ${job.finishedAt}${seconds(job.createdAt, job.finishedAt)}`);
  if (job.model) lines.push(`model     ${job.model}${job.dim ? ` (dim ${job.dim})` : ''}`);
  lines.push(`output    ${output}`);
  lines.push(...describeOutput(job, base));
  if (job.error) lines.push(`error     ${job.error.code}: ${job.error.message}`);
  for (const i of job.items.filter((x) => x.error)) {
    lines.push(`failed    ${i.id}: ${i.error!.code}: ${i.error!.message}`);
  }
  return `${lines.join('\n')}\n`;
}

async function status(id: string, opts: ApiOptions & { json?: boolean }): Promise<number> {
  const client = new ApiClient(opts);
  const { body } = await getJob(client, id);
  process.stdout.write(opts.json ? `${JSON.stringify(body, null, 2)}\n` : describeJob(body, client.base));
  return EXIT_OK;
}

// ---- registration ------------------------------------------------------------------------------------------

const SUBMIT_HELP = `
Inputs: an http(s) argument is sent as a URL (the workers fetch it); anything else is a local file, sent
as base64. Each image's id is the argument as given.

Output:
  inline                          vectors kept by the service; --wait writes them as JSON lines:
                                    {"id": "<argument>", "image_features": [...]}
                                    {"id": "<argument>", "error": {"code": "...", "message": "..."}}
  blob:<container>[/<template>]   written to the deployment's storage account; the template must
                                  contain {jobId} and may contain {date} (default {date}/{jobId})
  callback:<url>                  POSTed, signed, to <url> (see docs/webhooks.md)

When the API requires a key, set EMBEDPOOL_API_KEY (or --api-key; sent as Authorization: Bearer).

Without --wait, stdout is the job id. Exit status:
  0  submitted (without --wait), or the job completed
  2  the job ended partially_failed, failed or cancelled
  1  usage error, unreadable file, or an HTTP error (the API refused the job, or is unreachable)
`;

export function registerSubmitCommands(program: Command): void {
  apiOptions(
    program
      .command('submit')
      .description('submit images as an async job to a running API (POST /v1/jobs)')
      .argument('<inputs...>', 'image files and/or http(s) URLs'),
  )
    .addOption(
      new Option('--output <spec>', 'inline | blob:<container>[/<path template>] | callback:<url>')
        .argParser(parseOutputSpec)
        .default({ type: 'inline' } satisfies OutputSpec, 'inline'),
    )
    .option('--normalize', 'unit-length vectors')
    .option('--priority <n>', '1 (runs first) .. 1000; the service default is 100', priority)
    .option(
      '--idempotency-key <key>',
      'a retried submit with the same key and inputs returns the same job',
      idempotencyKey,
    )
    .option('--wait', 'wait until the job is finished, print a summary and (inline) the results')
    .option('--wait-timeout <seconds>', 'with --wait: give up waiting after this long (exit 1)', positiveInt)
    .option('--out <file.jsonl>', 'with --wait: write the result lines here (atomically) instead of stdout')
    .addHelpText('after', SUBMIT_HELP)
    .action(runAction((inputs: string[], opts: SubmitOptions) => submit(inputs, opts)));

  apiOptions(
    program
      .command('status')
      .description("show a job's state, counts, times, output location and delivery (GET /v1/jobs/{id})")
      .argument('<id>', 'the job id `submit` printed'),
  )
    .option('--json', "print the API's JSON as it is")
    .action(runAction((id: string, opts: ApiOptions & { json?: boolean }) => status(id, opts)));
}
