import type { BenchReport } from '../run';
import { coldStartMarkdown } from './cold-start';
import { renderPipeline } from './pipeline';

const MiB = 2 ** 20;

function table(header: string[], rows: (string | number | null | undefined)[][]): string {
  const cell = (v: string | number | null | undefined) => (v === null || v === undefined ? '–' : String(v));
  const align = header.map((_, i) =>
    rows.every((r) => typeof r[i] === 'number' || r[i] === null) ? '---:' : '---',
  );
  return [
    `| ${header.join(' | ')} |`,
    `| ${align.join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

const mib = (b: number) => Math.round(b / MiB);
const fmt = (v: number | null | undefined, digits = 2) =>
  v === null || v === undefined || !Number.isFinite(v) ? null : Number(v.toFixed(digits));

/** The markdown summary written beside the JSON: the same numbers, as tables. */
export function renderMarkdown(r: BenchReport): string {
  const m = r.machine;
  const out: string[] = [];
  out.push(`# embedpool bench: ${r.startedAt.slice(0, 10)} on ${m.hostname} (${r.mode})`);
  out.push('');
  out.push(`Command: \`${r.command}\` — ${r.durationSeconds} s in all.`);
  out.push('');
  out.push(
    table(
      ['machine', ''],
      [
        ['CPU', `${m.cpuModel}, ${m.logicalCpus} logical CPUs, ${m.physicalCores} cores`],
        [
          'CPU features',
          Object.entries(m.cpuFlags)
            .filter(([, v]) => v)
            .map(([k]) => k)
            .join(', ') || 'none of avx2/avx512/amx',
        ],
        ['memory', `${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB`],
        ['OS', `${m.os} (kernel ${m.kernel}, ${m.arch})`],
        ['GPUs', m.gpus.length ? m.gpus.join('; ') : 'none'],
        ['node / onnxruntime-node', `${m.nodeVersion} / ${m.onnxruntimeNodeVersion}`],
        ['sharp / libvips / redis', `${m.sharpVersion} / ${m.libvipsVersion} / ${m.redisServerVersion}`],
        ['load average start / end', `${m.loadAverageAtStart.join(' ')} / ${r.loadAverageAtEnd.join(' ')}`],
        ['commit', m.gitCommit ?? 'unknown'],
        [
          'model',
          `${r.model.path} (${mib(r.model.bytes)} MiB, ${r.model.dtype}${r.model.randomWeights ? ', random weights' : ''})`,
        ],
        ['provider', r.provider],
      ],
    ),
  );
  out.push('');

  if (r.targets.length) {
    out.push('## Targets');
    out.push('');
    out.push(
      table(
        ['target', 'goal', 'measured', 'verdict'],
        r.targets.map((t) => [
          t.description,
          t.target,
          t.measured,
          t.met ? 'met' : `missed by ${t.missedBy}`,
        ]),
      ),
    );
    out.push('');
  }

  if (r.raw) {
    out.push('## Raw model throughput (Engine -> onnxruntime-node, no pipeline)');
    out.push('');
    out.push(
      'images/s = sessions x batch / median run time (the headline); "wall" = images / elapsed, which a noisy neighbour drags down.',
    );
    out.push('');
    out.push(
      table(
        [
          'intra-op x sessions',
          'batch',
          'img/s (median)',
          'img/s (wall)',
          'run ms p50',
          'run ms p95',
          'ms/img',
          'runs',
          'img per CPU-s',
          'foreign cores',
          'tries',
        ],
        r.raw.cells.map((c) => [
          `${c.intraOpThreads}x${c.sessions}`,
          c.batchSize,
          c.imagesPerSecMedian,
          c.imagesPerSecWall,
          c.runMs.median,
          c.runMs.p95,
          c.msPerImageMedian,
          c.runs,
          c.imagesPerCoreSecond,
          c.cpu.foreignCores,
          c.attempts ?? 1,
        ]),
      ),
    );
    out.push('');
    if (r.raw.best) {
      const b = r.raw.best;
      out.push(
        `Ceiling: **${b.imagesPerSecMedian} img/s** at batch ${b.batchSize}, ${b.intraOpThreads} intra-op x ${b.sessions} session(s).`,
      );
      out.push('');
    }
  }

  if (r.preprocess) {
    const p = r.preprocess;
    out.push('## Preprocessing (decode + resize + crop + normalise, one at a time = one core)');
    out.push('');
    out.push(
      table(
        [
          'image',
          'format',
          'size',
          'exact ms',
          'shrink ms',
          'exact img/s/core',
          'shrink img/s/core',
          'speed-up',
          'tensor MAD shrink vs exact',
          'tensor cos',
          'MAD vs PIL exact / shrink',
          'emb. cos shrink vs exact',
        ],
        p.rows.map((x) => [
          x.name + (x.synthetic ? ' (synthetic)' : ''),
          x.format,
          `${x.width}x${x.height}`,
          x.exactMs.median,
          x.shrinkMs.median,
          x.exactImagesPerSecPerCore,
          x.shrinkImagesPerSecPerCore,
          x.shrinkSpeedup,
          x.shrinkVsExact.tensorMad,
          x.shrinkVsExact.tensorCosine,
          x.vsPilReference ? `${x.vsPilReference.exactMad} / ${x.vsPilReference.shrinkMad}` : null,
          x.embeddingCosineShrinkVsExact,
        ]),
      ),
    );
    out.push('');
    out.push(
      `Fixture mix (${p.mix.images} decodes): exact ${p.mix.exactImagesPerSecOneAtATime} img/s one at a time, ` +
        `${p.mix.exactImagesPerSecParallel} img/s ${p.mix.parallel} at a time; shrink-on-load ${p.mix.shrinkImagesPerSecOneAtATime} / ` +
        `${p.mix.shrinkImagesPerSecParallel} img/s.`,
    );
    out.push('');
    for (const n of p.notes) out.push(`- ${n}`);
    out.push('');
  }

  if (r.e2e) {
    const e = r.e2e;
    out.push('## End to end (API -> Redis -> worker -> answer, one process, private redis-server)');
    out.push('');
    out.push(
      `Service: provider ${e.server.provider}, ${e.server.inferenceThreads} session(s); settings ` +
        Object.entries(e.server.settings)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ') +
        '. Images: the 14 fixture photos in turn, base64 in JSON, one image per /score request.',
    );
    out.push('');
    const ratio = new Map(e.ratios.map((x) => [x.name, x.ratioToCeiling]));
    const cpuRatio = new Map(e.ratios.map((x) => [x.name, x.cpuNormalisedRatio]));
    out.push(
      table(
        [
          'phase',
          'images',
          'img/s',
          'x raw ceiling',
          'x raw per CPU-second',
          'latency p50 / p95 / p99 ms',
          'mean batch',
          'model busy',
          'Redis cmds/img (with scripts)',
          'Redis KiB/img in / out',
          'loop lag p99 / max ms',
          'RSS peak MiB',
          'foreign cores',
          'tries',
        ],
        e.phases.map((x) => [
          x.name,
          x.images,
          x.kind === 'idle' ? null : fmt(x.imagesPerSec),
          ratio.get(x.name) ?? null,
          cpuRatio.get(x.name) ?? null,
          x.latencyMs.n ? `${x.latencyMs.median} / ${x.latencyMs.p95} / ${x.latencyMs.p99}` : null,
          x.server.engine.runs ? x.server.engine.meanBatch : null,
          x.server.engine.runs ? `${Math.round(x.server.engine.busyRatio * 100)}%` : null,
          x.redis.commandsPerImage ?? `${fmt(x.redis.commands / Math.max(0.001, x.redis.seconds), 1)}/s`,
          x.redis.netBytesPerImage
            ? `${(x.redis.netBytesPerImage.in / 1024).toFixed(0)} / ${(x.redis.netBytesPerImage.out / 1024).toFixed(0)}`
            : null,
          `${x.server.eventLoopDelayMs.p99} / ${x.server.eventLoopDelayMs.max}`,
          mib(x.server.rssPeakBytes),
          x.cpu.foreignCores,
          x.attempts ?? 1,
        ]),
      ),
    );
    out.push('');
    out.push(
      `Idle single-image /score (${e.latencyImage}): p50 ${e.latency.p50Ms} ms, p95 ${e.latency.p95Ms} ms, p99 ${e.latency.p99Ms} ms; ` +
        `raw batch-1 median ${e.latency.rawBatch1MedianMs ?? 'n/a'} ms; overhead p50 ${e.latency.overheadP50VsRawMs ?? 'n/a'} ms ` +
        `(per request, latency minus its own model run: ${e.latency.overheadPairedMedianMs ?? 'n/a'} ms).`,
    );
    out.push('');
    const tiny = e.phases.find((x) => x.name === 'latency (idle, 16x16 PNG)');
    if (tiny) {
      out.push(
        `The same with a 780-byte 16x16 PNG: p50 ${tiny.latencyMs.median} ms, overhead per request ` +
          `${tiny.pairedOverheadMs ?? 'n/a'} ms (decode ${tiny.server.stages['decode']?.meanMs ?? 'n/a'} ms).`,
      );
      out.push('');
    }
    const stageRows = e.phases
      .filter((x) => x.kind !== 'idle')
      .map((x) => [
        x.name,
        x.server.stages['queue_wait']?.meanMs ?? null,
        x.server.stages['decode']?.meanMs ?? null,
        x.server.stages['batch_wait']?.meanMs ?? null,
        x.server.stages['inference']?.meanMs ?? null,
        x.server.stages['end_to_end']?.meanMs ?? null,
      ]);
    out.push("Mean stage times from the worker's own histogram (embedpool_stage_seconds), ms:");
    out.push('');
    out.push(
      table(
        [
          'phase',
          'queue_wait (per job)',
          'decode (per image)',
          'batch_wait (per batch)',
          'inference (per batch)',
          'end_to_end (per job, enqueue to done)',
        ],
        stageRows,
      ),
    );
    out.push('');
    if (e.accounting) {
      const a = e.accounting;
      const list = (o: Record<string, number>) =>
        Object.entries(o)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ') || '–';
      out.push('### Redis commands per image (MONITOR; background subtracted)');
      out.push('');
      out.push(
        table(
          ['traffic', 'round trips / image', 'by command', 'inside scripts / image', 'by command'],
          [
            [
              `/score, ${a.scoreRequests} sequential single-image requests`,
              a.score.clientPerImage,
              list(a.score.clientByCommand),
              a.score.luaPerImage,
              list(a.score.luaByCommand),
            ],
            [
              `async job, ${a.jobImages} images, polled every 500 ms`,
              a.job.clientPerImage,
              list(a.job.clientByCommand),
              a.job.luaPerImage,
              list(a.job.luaByCommand),
            ],
          ],
        ),
      );
      out.push('');
      out.push(
        `Background with no traffic: ${a.idlePerSecond.client} round trips/s (${list(a.idlePerSecond.byCommand)}), ${a.idlePerSecond.lua} script commands/s.`,
      );
      out.push('');
    }
  }

  if (r.ab.length) {
    out.push('## A/B: worker settings under the same load');
    out.push('');
    const pct = (x: number) => `${Math.round(x * 100)}%`;
    const rows = r.ab.map((a) => [
      a.variant,
      a.idle?.p50Ms ?? null,
      a.idle?.overheadPairedMedianMs ?? null,
      a.idle?.decodeMeanMs ?? null,
      a.phase.imagesPerSec,
      a.phase.latencyMs.median,
      a.phase.latencyMs.p95,
      a.phase.server.engine.meanBatch,
      pct(a.phase.server.engine.busyRatio),
      mib(a.server.rssAfterStartBytes),
      mib(a.phase.server.rssPeakBytes),
      a.phase.server.eventLoopDelayMs.p99,
      a.phase.cpu.foreignCores,
    ]);
    out.push(
      `A few idle single-image requests, then sync /score with ${r.ab[0]!.phase.concurrency} concurrent clients; ` +
        'one fresh service per variant, baseline first. ' +
        'EMBEDPOOL_BENCH_ORT_* variants patch onnxruntime session options the Engine does not expose (bench-only preload).',
    );
    out.push('');
    out.push(
      table(
        [
          'variant',
          'idle p50 ms',
          'idle overhead ms',
          'idle decode ms',
          'img/s',
          'p50 ms',
          'p95 ms',
          'mean batch',
          'model busy',
          'RSS after start MiB',
          'RSS peak MiB',
          'loop lag p99 ms',
          'foreign cores',
        ],
        rows,
      ),
    );
    out.push('');
  }

  if (r.int8) {
    const q = r.int8;
    out.push('## int8 vs float32 (embedpool model quantize)');
    out.push('');
    out.push(
      `Full-size ViT-B/14 with outlier channels, SmoothQuant int8 (${q.model.int8Bytes} bytes vs ${q.model.fp32Bytes}, ` +
        `quantized in ${q.model.quantizeSeconds} s). CPU: ${q.cpu.vnni ? 'VNNI' : 'no VNNI'} ` +
        `(avx512_vnni ${q.cpu.avx512vnni}, avx_vnni ${q.cpu.avxVnni}, avx2 ${q.cpu.avx2}, amx_int8 ${q.cpu.amxInt8}); ` +
        `target ${q.speedupTarget}x.`,
    );
    out.push('');
    out.push(
      table(
        [
          'threads',
          'batch',
          'fp32 img/s',
          'int8 img/s',
          'speedup (median runs)',
          'speedup (fastest runs)',
          'fp32 / int8 CPU ms per image',
          'speedup (CPU time)',
          'foreign cores',
        ],
        q.raw.map((x) => [
          x.threads,
          x.batchSize,
          x.fp32.imagesPerSec,
          x.int8.imagesPerSec,
          x.speedup,
          x.speedupFastest,
          `${x.fp32.cpuMsPerImage} / ${x.int8.cpuMsPerImage}`,
          x.speedupCpu,
          x.foreignCores,
        ]),
      ),
    );
    out.push('');
    const line = (name: string, a: NonNullable<typeof q.naive>) =>
      `${name}: min cosine ${a.minCosine}, mean ${a.meanCosine}, norm ratio ${a.minNormRatio}..${a.maxNormRatio} on ${a.images} held-out photos (worst ${a.worst})`;
    out.push(
      `- ${line('SmoothQuant', q.smoothquant)}${q.smoothquant.passed ? '' : ' — BELOW the 0.995 gate'}`,
    );
    if (q.naive) out.push(`- ${line('plain int8 (no smoothing)', q.naive)}`);
    if (q.e2e) {
      out.push(
        `- end-to-end sync /score, ${q.e2e.concurrency} clients, ${q.e2e.seconds} s each: fp32 ${q.e2e.fp32ImagesPerSec} img/s, ` +
          `int8 ${q.e2e.int8ImagesPerSec} img/s (${q.e2e.speedup}x)`,
      );
    }
    out.push('');
  }

  if (r.micro) {
    out.push('## Micro A/B: optimizations in isolation');
    out.push('');
    out.push(
      table(
        [
          'batch',
          'buffer MiB',
          'round trip, transferred (ms)',
          'round trip, copied (ms)',
          'saved per batch (ms)',
        ],
        r.micro.transfer.map((t) => [
          t.batchSize,
          fmt(t.bufferBytes / MiB, 1),
          t.transferMs.median,
          t.copyMs.median,
          t.savedMsPerBatch,
        ]),
      ),
    );
    out.push('');
    const i = r.micro.idleBatch;
    out.push(
      `Lone image through the micro-batcher (0-ms model): ${i.noWaitWhenIdleMs.median} ms with the no-wait-when-idle rule, ` +
        `${i.timerOnlyMs.median} ms when it waits BATCH_WAIT_MS=${i.batchWaitMs} for company.`,
    );
    out.push('');
  }

  if (r.coldStart) out.push(...coldStartMarkdown(r.coldStart));
  if (r.pipeline) {
    out.push('## Pipeline cost per image (near-zero-cost model standing in for a GPU)');
    out.push('');
    out.push(renderPipeline(r.pipeline));
    for (const n of r.pipeline.notes) out.push(`- ${n}`);
    out.push('');
  }

  if (r.notes.length) {
    out.push('## Notes');
    out.push('');
    for (const n of r.notes) out.push(`- ${n}`);
    out.push('');
  }
  return `${out.join('\n')}\n`;
}
