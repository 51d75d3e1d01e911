export { type ApiDeps, createApiApp } from './app';
export { type AzureScoreRequest, azureScoreRequestSchema, parseScoreRequest } from './azure-schema';
export { type RowFailure, RowFailuresError, toHttpError } from './http-errors';
export { type ApiMetrics, createApiMetrics } from './metrics';
export { type ScoreAnswer, type ScoreCall, ScoreClient } from './score-client';
export { type JobOutcome, ScoreWaiter, type ScoreWaiterOptions } from './score-waiter';
export { type RunningApi, type StartApiOptions, startApi } from './server';
