import type { Logger } from '../logger';

export type Stopper = () => Promise<void>;

/**
 * The order a process stops in, built as it starts. `first` goes ahead of everything added so far: each
 * consumer registers as it starts, so the API (started last) stops first and no new work arrives while the
 * workers drain, and the workers drain before the Redis they need goes. `last` goes behind everything: the
 * metrics listener and the span exporter, so the drain itself is scraped and traced.
 */
export class ShutdownOrder {
  private readonly stoppers: Stopper[] = [];

  first(stop: Stopper): void {
    this.stoppers.unshift(stop);
  }

  last(stop: Stopper): void {
    this.stoppers.push(stop);
  }

  async run(): Promise<void> {
    for (const stop of [...this.stoppers]) await stop();
  }
}

/**
 * SIGTERM/SIGINT: stop taking work, finish what is in flight, then exit 0 (1 if the drain overruns
 * `timeoutMs` or a stopper fails). Installed before anything starts: a signal during start-up must still
 * drain what has started, since work can arrive at once.
 */
export function stopOnSignals(logger: Logger, timeoutMs: number, order: ShutdownOrder): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: draining in-flight work');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs }, 'drain took too long; exiting');
      process.exit(1);
    }, timeoutMs);
    timer.unref();
    order.run().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
