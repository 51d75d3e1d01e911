import { Registry, register } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createApiMetrics } from './metrics';

describe('createApiMetrics', () => {
  it('shares one registry between several apps without registering anything twice', async () => {
    const registry = new Registry();
    const a = createApiMetrics(registry);
    const b = createApiMetrics(registry);
    expect(b.httpRequests).toBe(a.httpRequests);
    a.scoreImages.inc(3);
    b.scoreImages.inc(2);
    const text = await registry.metrics();
    expect(text).toMatch(/^embedpool_score_images_total 5$/m);
    expect(text.match(/^# TYPE process_cpu_user_seconds_total/gm)).toHaveLength(1);
  });

  it('uses a private registry when none is given, never the global default', async () => {
    const m = createApiMetrics();
    expect(m.registry).not.toBe(register);
    expect(await register.metrics()).not.toContain('embedpool_');
  });
});
