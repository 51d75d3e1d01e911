import { writeFile } from 'node:fs/promises';
import { loadConfig } from '@embedpool/core/config';
import { EmbedpoolError } from '@embedpool/core/errors';
import type { Command } from 'commander';
import { EXIT_OK, EXIT_PARTIAL, runAction } from './cli-support';

interface RecoverOptions {
  output?: string;
  container: string[];
  failOnLost?: boolean;
}

/**
 * `embedpool recover`: after Redis lost its data, list the outputs in storage whose job or ingestion records
 * are gone (docs/hardening.md). Reads REDIS_URL, QUEUE_PREFIX, JOB_TTL_S and the BLOB_* settings.
 */
export function registerRecoverCommand(program: Command): void {
  program
    .command('recover')
    .description('list outputs in blob storage whose job or ingestion records Redis no longer holds')
    .option('--output <file>', 'write the JSON report here (default: stdout)')
    .option(
      '--container <name>',
      'a container to scan (repeatable; default: every container of the account)',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option('--fail-on-lost', 'exit 2 when any output lost its record (for scripts and CI)')
    .action(
      runAction(async (opts: RecoverOptions) => {
        const config = loadConfig(process.env);
        const { blobAuthFromConfig, createBlobServiceClient } = await import('@embedpool/core/blob');
        const { createRedis } = await import('@embedpool/core/queue');
        const { recoveryReport } = await import('@embedpool/core/recovery');
        const auth = blobAuthFromConfig(config);
        if (!auth) throw new EmbedpoolError('CONFIG_INVALID', 'no storage account configured (BLOB_*)');
        const redis = createRedis(config.REDIS_URL, 'consumer');
        try {
          const report = await recoveryReport({
            redis,
            prefix: config.QUEUE_PREFIX,
            blob: createBlobServiceClient(auth),
            ...(opts.container.length > 0 ? { containers: opts.container } : {}),
            recordTtlSeconds: config.JOB_TTL_S,
          });
          const text = `${JSON.stringify(report, null, 2)}\n`;
          if (opts.output) await writeFile(opts.output, text);
          else process.stdout.write(text);
          const lost =
            report.jobs.filter((j) => j.why !== 'expired').length +
            report.ingestions.filter((i) => i.why !== 'expired').length;
          process.stderr.write(
            `${report.jobs.length} job output(s) and ${report.ingestions.length} ingestion output(s) without a ` +
              `record (${lost} lost, not expired) in ${report.containers.length} container(s)` +
              `${opts.output ? `; report: ${opts.output}` : ''}\n`,
          );
          return opts.failOnLost && lost > 0 ? EXIT_PARTIAL : EXIT_OK;
        } finally {
          redis.disconnect();
        }
      }),
    );
}
