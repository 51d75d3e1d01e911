export { type ApiDeps, createApiApp } from './app';
export {
  type AuthMode,
  type AuthSetup,
  hashKey,
  isLoopbackHost,
  newKey,
  ownerOf,
  type Principal,
  principalOf,
  resolveAuth,
} from './auth';
export { type AzureScoreRequest, azureScoreRequestSchema, parseScoreRequest } from './azure-schema';
export { type RowFailure, RowFailuresError, toHttpError } from './http-errors';
export { type ApiMetrics, createApiMetrics } from './metrics';
export { admitImages, BacklogGate } from './overload';
export { type ScoreAnswer, type ScoreCall, ScoreClient } from './score-client';
export { type JobOutcome, ScoreWaiter, type ScoreWaiterOptions } from './score-waiter';
export { type RunningApi, type StartApiOptions, startApi } from './server';
