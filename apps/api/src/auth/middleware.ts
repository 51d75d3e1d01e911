import type { Logger } from '@embedpool/core/logger';
import type { Request, RequestHandler, Response } from 'express';
import { looksLikeJwt } from './jwt';
import { sameSecret } from './keys';
import { type Refusal, refuse } from './respond';
import type { AuthSetup } from './setup';

/** Who is calling: the owner of the jobs it creates and the bucket of its rate limit. */
export interface Principal {
  /** `key:<name>`, `jwt:<tenant>:<sub>`, or `anonymous` when auth is off. */
  id: string;
  kind: 'key' | 'jwt' | 'anonymous';
  /** The key's name or the token's subject, for logs. */
  name: string;
}

export const ANONYMOUS: Principal = Object.freeze({ id: 'anonymous', kind: 'anonymous', name: 'anonymous' });

const REALM = 'Bearer realm="embedpool"';
const JWKS_RETRY_AFTER_S = 5;

/** The caller, as authenticate() established it; anonymous when auth is off (or not installed). */
export function principalOf(res: Response): Principal {
  return (res.locals.principal as Principal | undefined) ?? ANONYMOUS;
}

/** The owner id stored with a job: only the same owner may read, cancel or redrive it. */
export function ownerOf(res: Response): string {
  return principalOf(res).id;
}

type Presented = { token: string; via: 'authorization' | 'api-key' };

/** `api-key: <key>` (Azure OpenAI style) wins; else `Authorization: Bearer <key or JWT>`. */
function presented(req: Request): Presented | 'malformed' | undefined {
  const apiKey = req.get('api-key');
  if (apiKey !== undefined) return apiKey.trim() ? { token: apiKey.trim(), via: 'api-key' } : 'malformed';
  const header = req.get('authorization');
  if (header === undefined) return undefined;
  const m = /^Bearer +(\S+) *$/i.exec(header);
  return m ? { token: m[1]!, via: 'authorization' } : 'malformed';
}

async function identify(setup: AuthSetup, req: Request): Promise<Principal | Refusal> {
  const cred = presented(req);
  if (cred === undefined) {
    const how = setup.jwt
      ? 'Authorization: Bearer <API key or Entra ID token>'
      : 'Authorization: Bearer <API key> or api-key: <API key>';
    return {
      status: 401,
      code: 'UNAUTHORIZED',
      message: `authentication required: send ${how}`,
      wwwAuthenticate: REALM,
    };
  }
  const invalid = (message: string): Refusal => ({
    status: 401,
    code: 'UNAUTHORIZED',
    message,
    wwwAuthenticate: `${REALM}, error="invalid_token"`,
  });
  if (cred === 'malformed')
    return invalid('malformed credentials: expected Bearer <token> or api-key: <key>');
  const name = setup.keys?.match(cred.token);
  if (name !== undefined) return { id: `key:${name}`, kind: 'key', name };
  if (setup.jwt && cred.via === 'authorization' && looksLikeJwt(cred.token)) {
    const out = await setup.jwt.verify(cred.token);
    if (out.ok) return { id: `jwt:${out.tenant}:${out.subject}`, kind: 'jwt', name: out.subject };
    if (out.reason === 'unavailable') {
      return { status: 503, code: 'UNAVAILABLE', message: out.message, retryAfterS: JWKS_RETRY_AFTER_S };
    }
    if (out.reason === 'forbidden') return { status: 403, code: 'FORBIDDEN', message: out.message };
    return invalid(out.message);
  }
  return invalid('invalid credentials');
}

function attach(res: Response, p: Principal): void {
  res.locals.principal = p;
  // Every later log line of this request says who asked (never the credential itself).
  const ctx = res.locals.ctx as { log: Logger } | undefined;
  if (ctx) ctx.log = ctx.log.child({ principal: p.id });
}

/**
 * Every route mounted after this needs a valid API key or token (when auth is on). Missing or wrong
 * credentials: 401 JSON with WWW-Authenticate; a valid token without the required role: 403.
 */
export function authenticate(setup: AuthSetup): RequestHandler {
  if (setup.mode === 'none') {
    return (_req, res, next) => {
      res.locals.principal = ANONYMOUS;
      next();
    };
  }
  return async (req, res, next) => {
    const who = await identify(setup, req);
    if ('status' in who) return refuse(req, res, who);
    attach(res, who);
    next();
  };
}

/**
 * /metrics: `Authorization: Bearer <METRICS_TOKEN>` when that is set; otherwise the API's own auth
 * (open when auth is off, any valid API credential when it is on).
 */
export function metricsGuard(setup: AuthSetup): RequestHandler {
  const token = setup.metricsToken;
  if (!token) return authenticate(setup);
  return (req, res, next) => {
    const m = /^Bearer +(\S+) *$/i.exec(req.get('authorization') ?? '');
    if (m && sameSecret(m[1]!, token)) return next();
    refuse(req, res, {
      status: 401,
      code: 'UNAUTHORIZED',
      message: '/metrics needs Authorization: Bearer <METRICS_TOKEN>',
      wwwAuthenticate: 'Bearer realm="embedpool metrics"',
    });
  };
}
