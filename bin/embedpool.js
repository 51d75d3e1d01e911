#!/usr/bin/env node
// The CLI is TypeScript; tsx compiles it on load so there is no build step between a checkout and `npm start`.
import { register } from 'tsx/esm/api';

register();
await import('./cli.ts');
