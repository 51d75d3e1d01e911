// Worker threads start as plain Node: register tsx so the TypeScript thread body loads the same way
// everywhere (CLI, tests, containers).
import { register } from 'tsx/esm/api';

register();
await import('./decode-thread.ts');
