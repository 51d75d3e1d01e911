import { describe, expect, it } from 'vitest';
import { ShutdownOrder } from './shutdown';

describe('ShutdownOrder', () => {
  it('stops what started last first, and the `last` ones after everything', async () => {
    const order = new ShutdownOrder();
    const stopped: string[] = [];
    const stop = (name: string) => async () => {
      stopped.push(name);
    };
    // As `embedpool serve` starts: tracing, private Redis, worker, delivery, metrics listener, API.
    order.last(stop('telemetry'));
    order.first(stop('redis'));
    order.first(stop('worker'));
    order.first(stop('delivery'));
    order.last(stop('metrics'));
    order.first(stop('api'));
    await order.run();
    expect(stopped).toEqual(['api', 'delivery', 'worker', 'redis', 'telemetry', 'metrics']);
  });

  it('waits for each stop before the next', async () => {
    const order = new ShutdownOrder();
    const stopped: string[] = [];
    order.first(async () => {
      stopped.push('second');
    });
    order.first(async () => {
      await new Promise<void>((resolve) => setImmediate(resolve));
      stopped.push('first');
    });
    await order.run();
    expect(stopped).toEqual(['first', 'second']);
  });
});
