import { describe, expect, it } from 'vitest';
import {
  checkSignature,
  DELIVERY_ID_HEADER,
  deliveryHeaders,
  EVENT_HEADER,
  parseSignatureHeader,
  SIGNATURE_HEADER,
  signatureHeader,
  signPayload,
  verifySignature,
} from './signing';

const SECRET = 'whsec_0123456789abcdef';
const BODY = '{"event":"job.completed","jobId":"j1"}';
const T = 1_700_000_000;
// printf '%s' '1700000000.{"event":"job.completed","jobId":"j1"}' | openssl dgst -sha256 -hmac 'whsec_0123456789abcdef'
const KNOWN = 'fcdbaa9990b2f267e0514819e441036979517673b4924f21378d547901e45a93';
const at = (seconds: number) => ({ now: seconds * 1000 });

describe('signPayload', () => {
  it('matches a vector computed independently (openssl)', () => {
    expect(signPayload(SECRET, T, BODY)).toBe(KNOWN);
    expect(signPayload(SECRET, T, Buffer.from(BODY))).toBe(KNOWN);
    expect(signatureHeader(SECRET, T, BODY)).toBe(`t=${T},v1=${KNOWN}`);
  });

  it('builds every delivery header', () => {
    const h = deliveryHeaders({ secret: SECRET, deliveryId: 'dlv_1', body: BODY, timestamp: T });
    expect(h).toEqual({
      'Content-Type': 'application/json',
      'User-Agent': 'embedpool',
      [EVENT_HEADER]: 'job.completed',
      [DELIVERY_ID_HEADER]: 'dlv_1',
      [SIGNATURE_HEADER]: `t=${T},v1=${KNOWN}`,
    });
  });
});

describe('verifySignature', () => {
  const header = `t=${T},v1=${KNOWN}`;

  it('accepts the right secret within tolerance, either side of the timestamp', () => {
    expect(verifySignature(SECRET, header, BODY, at(T))).toBe(true);
    expect(verifySignature(SECRET, header, Buffer.from(BODY), at(T + 300))).toBe(true);
    expect(verifySignature(SECRET, header, BODY, at(T - 300))).toBe(true);
    expect(checkSignature(SECRET, header, BODY, at(T))).toEqual({ ok: true, timestamp: T });
  });

  it('refuses a timestamp outside the tolerance', () => {
    expect(checkSignature(SECRET, header, BODY, at(T + 301))).toEqual({ ok: false, reason: 'expired' });
    expect(verifySignature(SECRET, header, BODY, at(T - 301))).toBe(false);
    expect(verifySignature(SECRET, header, BODY, { now: (T + 1000) * 1000, toleranceSeconds: 1000 })).toBe(
      true,
    );
  });

  it('refuses a tampered body, a wrong secret and a changed timestamp', () => {
    expect(checkSignature(SECRET, header, BODY.replace('j1', 'j2'), at(T))).toEqual({
      ok: false,
      reason: 'mismatch',
    });
    expect(verifySignature(`${SECRET}x`, header, BODY, at(T))).toBe(false);
    expect(verifySignature(SECRET, `t=${T + 1},v1=${KNOWN}`, BODY, at(T))).toBe(false);
  });

  it('accepts any listed secret and any v1 value (rotation)', () => {
    const next = 'whsec_next_secret_fedcba9876';
    const rotated = `t=${T},v1=${signPayload(next, T, BODY)},v1=${KNOWN}`;
    expect(verifySignature([next], rotated, BODY, at(T))).toBe(true);
    expect(verifySignature([SECRET], rotated, BODY, at(T))).toBe(true);
    expect(verifySignature(['unrelated-secret-000', next], header, BODY, at(T))).toBe(false);
    expect(verifySignature(['unrelated-secret-000', SECRET], header, BODY, at(T))).toBe(true);
    expect(verifySignature([], header, BODY, at(T))).toBe(false);
  });

  it('refuses malformed headers', () => {
    for (const bad of [
      undefined,
      null,
      '',
      'v1=abc',
      `t=${T}`,
      `t=abc,v1=${KNOWN}`,
      `t=${T},v1=${KNOWN.slice(2)}`,
    ]) {
      expect(checkSignature(SECRET, bad, BODY, at(T))).toEqual({ ok: false, reason: 'malformed' });
    }
    // Unknown schemes are ignored, upper-case hex is fine, spaces around parts too.
    expect(parseSignatureHeader(`t=${T}, v0=zz, v1=${KNOWN.toUpperCase()}`)).toEqual({
      timestamp: T,
      signatures: [KNOWN],
    });
  });
});
