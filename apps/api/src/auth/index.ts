export { JwtVerifier, looksLikeJwt } from './jwt';
export { hashKey, KeyRing, newKey, sameSecret } from './keys';
export { ANONYMOUS, authenticate, metricsGuard, ownerOf, type Principal, principalOf } from './middleware';
export { type Refusal, refuse } from './respond';
export { type AuthMode, type AuthSetup, isLoopbackHost, resolveAuth } from './setup';
