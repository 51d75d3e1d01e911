import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'packages/*/src/**/*.test.ts',
      'apps/*/src/**/*.test.ts',
      'bench/**/*.test.ts',
      'test/**/*.test.ts',
    ],
    exclude: ['**/node_modules/**'],
    // Starts a private redis-server on 127.0.0.1:6379 when none answers there (or says what to install).
    globalSetup: ['test/support/global-redis.ts'],
    // onnxruntime's telemetry would try HTTPS uploads and scans /proc/self/cmdline; never wanted here.
    env: { ORT_DISABLE_TELEMETRY: '1' },
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: running every file at once only makes each slower.
    maxWorkers: 2,
  },
});
