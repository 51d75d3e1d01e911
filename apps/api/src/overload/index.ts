export { admitImages, BacklogGate, backlogGuard, OVERLOAD_RETRY_AFTER_S } from './backlog-gate';
export { hit, type RateDecision, type RateLimitOptions, rateLimit, rateLimitKey } from './rate-limit';
