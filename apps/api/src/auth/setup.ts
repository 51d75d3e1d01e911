import { isIPv4, isIPv6 } from 'node:net';
import type { Config } from '@embedpool/core/config';
import { EmbedpoolError } from '@embedpool/core/errors';
import { JwtVerifier } from './jwt';
import { KeyRing } from './keys';

export type AuthMode = 'keys' | 'entra' | 'keys+entra' | 'none';

export interface AuthSetup {
  mode: AuthMode;
  /** Why the mode is what it is, for the boot log. */
  why: string;
  keys?: KeyRing;
  jwt?: JwtVerifier;
  /** Guards /metrics on its own when set. */
  metricsToken?: string;
}

/** 127.0.0.0/8, ::1 (and its IPv4-mapped form), `localhost`: nobody off this machine can connect. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIPv4(h)) return h.startsWith('127.');
  if (!isIPv6(h)) return false;
  // The WHATWG parser compresses any spelling: [::1], or [::ffff:7fxx:xxxx] for an IPv4-mapped 127/8.
  let n: string;
  try {
    n = new URL(`http://[${h}]/`).hostname;
  } catch {
    return false; // a zone id (fe80::1%eth0) or anything else the parser refuses: not loopback
  }
  return n === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(n);
}

function fail(message: string): never {
  throw new EmbedpoolError('CONFIG_INVALID', message);
}

/**
 * Decides how the API authenticates, once, at start. Secure by default: with nothing configured the API
 * serves without auth only on a loopback HOST; anywhere else it refuses to start unless AUTH=none says
 * that is intended. Throws CONFIG_INVALID with the variables to set.
 */
export function resolveAuth(config: Config): AuthSetup {
  const keysGiven = config.API_KEYS.length > 0;
  const jwtGiven =
    config.AUTH_JWT_ISSUER.length > 0 || config.AUTH_JWT_AUDIENCE.length > 0 || !!config.AUTH_JWT_JWKS_URL;
  const metrics = config.METRICS_TOKEN ? { metricsToken: config.METRICS_TOKEN } : {};

  let mode: AuthMode;
  let why: string;
  if (config.AUTH) {
    mode = config.AUTH;
    why = `AUTH=${config.AUTH}`;
  } else if (keysGiven || jwtGiven) {
    mode = keysGiven && jwtGiven ? 'keys+entra' : keysGiven ? 'keys' : 'entra';
    why = [keysGiven ? 'API_KEYS' : '', jwtGiven ? 'AUTH_JWT_*' : ''].filter(Boolean).join(' and ') + ' set';
  } else if (isLoopbackHost(config.HOST)) {
    mode = 'none';
    why = `no credentials configured and HOST=${config.HOST} is loopback (development)`;
  } else {
    fail(
      `refusing to start: HOST=${config.HOST} is reachable from other machines and no authentication is ` +
        'configured. Set API_KEYS (make one with `embedpool key new`), or AUTH_JWT_ISSUER, AUTH_JWT_AUDIENCE ' +
        'and AUTH_JWT_JWKS_URL (Entra ID), or set AUTH=none to serve without authentication on purpose.',
    );
  }

  if (mode === 'none') return { mode, why, ...metrics };
  const setup: AuthSetup = { mode, why, ...metrics };
  if (mode === 'keys' || mode === 'keys+entra') {
    if (!keysGiven) fail(`AUTH=${mode} needs API_KEYS (name:sha256hex,...; see \`embedpool key new\`)`);
    setup.keys = new KeyRing(config.API_KEYS);
  }
  if (mode === 'entra' || mode === 'keys+entra') {
    const missing = [
      config.AUTH_JWT_ISSUER.length === 0 ? 'AUTH_JWT_ISSUER' : '',
      config.AUTH_JWT_AUDIENCE.length === 0 ? 'AUTH_JWT_AUDIENCE' : '',
      config.AUTH_JWT_JWKS_URL ? '' : 'AUTH_JWT_JWKS_URL',
    ].filter(Boolean);
    if (missing.length > 0) fail(`AUTH=${mode} needs ${missing.join(', ')}`);
    const jwksUrl = new URL(config.AUTH_JWT_JWKS_URL!);
    if (
      jwksUrl.protocol !== 'https:' &&
      !(jwksUrl.protocol === 'http:' && isLoopbackHost(jwksUrl.hostname))
    ) {
      fail('AUTH_JWT_JWKS_URL must be https (plain http is accepted only for a loopback host)');
    }
    setup.jwt = new JwtVerifier({
      issuers: config.AUTH_JWT_ISSUER,
      audiences: config.AUTH_JWT_AUDIENCE,
      jwksUrl,
      role: config.AUTH_JWT_ROLE,
    });
  }
  return setup;
}
