import { createRemoteJWKSet, errors, type JWTPayload, jwtVerify } from 'jose';

export interface JwtOptions {
  issuers: string[];
  audiences: string[];
  jwksUrl: URL;
  /** An app role the token's `roles` claim must contain. */
  role?: string | undefined;
  /** Bound on one JWKS download. */
  timeoutMs?: number;
}

export type JwtOutcome =
  | { ok: true; subject: string; tenant: string; payload: JWTPayload }
  | { ok: false; reason: 'invalid' | 'forbidden' | 'unavailable'; message: string };

// Asymmetric only: an HMAC or unsigned token can never verify against a published key set.
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];
const CLOCK_TOLERANCE_S = 60;

/** A compact JWS: three base64url segments. API keys from `embedpool key new` have no dots. */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token);
}

/**
 * Microsoft Entra ID (or any OIDC issuer's) access tokens: signature against the issuer's published keys
 * (fetched from AUTH_JWT_JWKS_URL, cached, refetched when an unknown `kid` shows up), issuer, audience,
 * expiry and not-before (60 s of clock skew), and optionally an app role.
 */
export class JwtVerifier {
  private readonly jwks: ReturnType<typeof createRemoteJWKSet>;

  constructor(private readonly opts: JwtOptions) {
    this.jwks = createRemoteJWKSet(opts.jwksUrl, {
      timeoutDuration: opts.timeoutMs ?? 5_000,
      cooldownDuration: 30_000,
      cacheMaxAge: 10 * 60_000,
    });
  }

  async verify(token: string): Promise<JwtOutcome> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.jwks, {
        issuer: this.opts.issuers,
        audience: this.opts.audiences,
        algorithms: ALGORITHMS,
        clockTolerance: CLOCK_TOLERANCE_S,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      if (keySetUnavailable(err)) {
        return { ok: false, reason: 'unavailable', message: 'the token signing keys cannot be fetched' };
      }
      const message = err instanceof Error ? err.message : String(err);
      return { ok: false, reason: 'invalid', message: `invalid token: ${message}` };
    }
    if (this.opts.role) {
      const roles = Array.isArray(payload.roles) ? payload.roles : [];
      if (!roles.includes(this.opts.role)) {
        return { ok: false, reason: 'forbidden', message: `the token lacks the role ${this.opts.role}` };
      }
    }
    const tenant = typeof payload.tid === 'string' ? payload.tid : String(payload.iss);
    return { ok: true, subject: String(payload.sub), tenant, payload };
  }
}

/** The key set could not be had (down, slow, not JSON): our problem, not the caller's token's. */
function keySetUnavailable(err: unknown): boolean {
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) return true;
  // A fetch that failed outright surfaces as a plain TypeError; a non-200 answer as a generic JOSEError.
  if (!(err instanceof errors.JOSEError)) return true;
  return err.code === 'ERR_JOSE_GENERIC';
}
