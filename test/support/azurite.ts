/**
 * A private Azurite blob emulator for tests (loopback only, telemetry off). The implementation lives in
 * packages/testkit/src/azurite-kit.ts, beside the other test kits.
 */
export {
  AZURITE_ACCOUNT,
  AZURITE_KEY,
  type Azurite,
  type StartAzuriteOptions,
  startAzurite,
} from '@embedpool/testkit/azurite-kit';
