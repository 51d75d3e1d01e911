/**
 * A private Azurite blob emulator for tests (loopback only, telemetry off). The implementation lives in
 * packages/core/src/blob/azurite-kit.ts so core's own tests can use it inside core's TypeScript project.
 */
export {
  AZURITE_ACCOUNT,
  AZURITE_KEY,
  type Azurite,
  type StartAzuriteOptions,
  startAzurite,
} from '../../packages/core/src/blob/azurite-kit';
