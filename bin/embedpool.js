#!/usr/bin/env -S node --initial-old-space-size=256
// The flag: SERVICE_NODE_FLAGS (packages/core/src/process/node-flags.ts says why); `npm start` passes it too.
// The CLI (apps/cli) is TypeScript; tsx compiles it on load so there is no build step between a checkout
// and `npm start`.
import { register } from 'tsx/esm/api';

// onnxruntime's telemetry would try HTTPS uploads; set before any session is created, in the real environ.
process.env.ORT_DISABLE_TELEMETRY ??= '1';
register();
await import('../apps/cli/src/cli.ts');
