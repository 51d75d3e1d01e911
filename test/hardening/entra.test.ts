/**
 * Microsoft Entra ID access tokens, against a key set served on loopback by the test (keys generated
 * here): issuer, audience, expiry, signature, algorithm and role are all checked, the token's subject
 * owns its jobs, and a key set that cannot be fetched is a 503, not a 401.
 */
import { readFileSync } from 'node:fs';
import { hashKey, newKey } from '@embedpool/api';
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, testConfig } from '../support/stack';
import { call, goodImage, guardNetwork, type LoopbackServer, pollJob, startLoopbackServer } from './support';

guardNetwork();

const TENANT = '11111111-2222-3333-4444-555555555555';
const ISSUER = `https://login.microsoftonline.com/${TENANT}/v2.0`;
const AUDIENCE = 'api://embedpool';
const ROLE = 'Embeddings.Invoke';
const good = readFileSync(goodImage.path).toString('base64');

type Keys = Awaited<ReturnType<typeof generateKeyPair>>;
let signing: Keys;
let stranger: Keys;
let jwks: LoopbackServer;

async function token(
  claims: JWTPayload = {},
  opts: { keys?: Keys; kid?: string; expiresIn?: string | number; alg?: string } = {},
): Promise<string> {
  return new SignJWT({ tid: TENANT, roles: [ROLE], ...claims })
    .setProtectedHeader({ alg: opts.alg ?? 'RS256', kid: opts.kid ?? 'k1', typ: 'JWT' })
    .setIssuer(String(claims.iss ?? ISSUER))
    .setAudience(claims.aud ?? AUDIENCE)
    .setSubject(String(claims.sub ?? 'user-1'))
    .setIssuedAt()
    .setExpirationTime(opts.expiresIn ?? '10m')
    .sign((opts.keys ?? signing).privateKey);
}

/** An unsigned token (`alg: none`), and one "signed" with HS256 using the public key as the secret. */
function forged(alg: 'none' | 'HS256'): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg, kid: 'k1', typ: 'JWT' });
  const body = b64({
    iss: ISSUER,
    aud: AUDIENCE,
    sub: 'mallory',
    tid: TENANT,
    roles: [ROLE],
    exp: now + 600,
  });
  return `${head}.${body}.${alg === 'none' ? '' : Buffer.from('not-a-signature').toString('base64url')}`;
}

beforeAll(async () => {
  signing = await generateKeyPair('RS256', { extractable: true });
  stranger = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(signing.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  jwks = await startLoopbackServer('127.0.0.1', (req, res) => {
    if (req.url !== '/discovery/v2.0/keys') return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
  });
});
afterAll(() => jwks?.close());

const entraEnv = () => ({
  AUTH_JWT_ISSUER: ISSUER,
  AUTH_JWT_AUDIENCE: AUDIENCE,
  AUTH_JWT_JWKS_URL: jwks.url('/discovery/v2.0/keys'),
  AUTH_JWT_ROLE: ROLE,
});

describe('Entra ID tokens (AUTH=entra)', () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  const submit = (headers: Record<string, string>) =>
    call(`${stack.api.url}/v1/jobs`, { body: { images: [{ base64: good }] }, headers });
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

  beforeAll(async () => {
    stack = await startStack(testConfig({ AUTH: 'entra', ...entraEnv() }));
  });
  afterAll(() => stack?.stop());

  it('accepts a valid token; its subject owns the job and another subject gets 404', async () => {
    const mine = bearer(await token({ sub: 'user-1' }));
    const submitted = await submit(mine);
    expect(submitted.status).toBe(202);
    const done = await pollJob(stack.api.url, submitted.json.id, mine);
    expect(done.state).toBe('completed');
    const theirs = bearer(await token({ sub: 'user-2' }));
    const other = await call(`${stack.api.url}/v1/jobs/${submitted.json.id}`, { headers: theirs });
    expect(other.status).toBe(404);
    // A fresh token for the same subject is the same owner.
    const again = await call(`${stack.api.url}/v1/jobs/${submitted.json.id}`, {
      headers: bearer(await token({ sub: 'user-1' }, { expiresIn: '5m' })),
    });
    expect(again.status).toBe(200);
  });

  it.each([
    ['expired', async () => token({}, { expiresIn: Math.floor(Date.now() / 1000) - 3600 }), /exp/],
    ['wrong audience', async () => token({ aud: 'api://someone-else' }), /aud/],
    ['wrong issuer', async () => token({ iss: 'https://login.microsoftonline.com/other/v2.0' }), /iss/],
    ['not yet valid', async () => token({ nbf: Math.floor(Date.now() / 1000) + 3600 }), /nbf/],
    ['signed by a key not in the set (same kid)', async () => token({}, { keys: stranger }), /signature/],
    [
      'an unknown kid',
      async () => token({}, { keys: stranger, kid: 'k9' }),
      /matching key|no applicable key/i,
    ],
    ['alg none', async () => forged('none'), /./],
    ['HS256 (key confusion)', async () => forged('HS256'), /./],
    ['garbage with two dots', async () => 'aaa.bbb.ccc', /./],
    ['an API key (keys are off)', async () => newKey(), /invalid credentials/],
  ])('%s: 401', async (_name, make, message) => {
    const res = await submit(bearer(await make()));
    expect(res.status).toBe(401);
    expect(res.json.error.code).toBe('UNAUTHORIZED');
    expect(res.json.error.message).toMatch(message);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="embedpool", error="invalid_token"');
  });

  it('a valid token without the required role: 403', async () => {
    const res = await submit(bearer(await token({ roles: ['Something.Else'] })));
    expect(res.status).toBe(403);
    expect(res.json.error.code).toBe('FORBIDDEN');
  });
});

describe('keys and Entra tokens together (AUTH derived: keys+entra)', () => {
  it('accepts either, and a key owner is not a token owner', async () => {
    const key = newKey();
    const stack = await startStack(testConfig({ API_KEYS: `svc:${hashKey(key)}`, ...entraEnv() }), {
      worker: false,
    });
    try {
      const byKey = await call(`${stack.api.url}/v1/jobs`, {
        body: { images: [{ base64: good }] },
        headers: { 'api-key': key },
      });
      expect(byKey.status).toBe(202);
      const asToken = await call(`${stack.api.url}/v1/jobs/${byKey.json.id}`, {
        headers: { authorization: `Bearer ${await token({ sub: 'svc' })}` },
      });
      expect(asToken.status).toBe(404);
      expect(
        (await call(`${stack.api.url}/v1/jobs/${byKey.json.id}`, { headers: { 'api-key': key } })).status,
      ).toBe(200);
    } finally {
      await stack.stop();
    }
  });
});

describe('a key set that cannot be fetched', () => {
  it('answers 503 with Retry-After (the caller did nothing wrong)', async () => {
    const closed = await startLoopbackServer('127.0.0.1', (_req, res) => res.end());
    const url = closed.url('/keys');
    await closed.close();
    const stack = await startStack(testConfig({ ...entraEnv(), AUTH_JWT_JWKS_URL: url }), { worker: false });
    try {
      const res = await call(`${stack.api.url}/v1/jobs/00000000-0000-4000-8000-000000000000`, {
        headers: { authorization: `Bearer ${await token()}` },
      });
      expect(res.status).toBe(503);
      expect(res.json.error.code).toBe('UNAVAILABLE');
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    } finally {
      await stack.stop();
    }
  });
});
