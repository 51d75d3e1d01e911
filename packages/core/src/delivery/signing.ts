/**
 * Webhook signatures, Stripe-style: `Embedpool-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
 * `${t}.${raw body}`. Receivers verify with `verifySignature`; docs/webhooks.md documents the scheme.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'Embedpool-Signature';
export const DELIVERY_ID_HEADER = 'Embedpool-Delivery-Id';
export const EVENT_HEADER = 'Embedpool-Event';
export const EVENT_JOB_COMPLETED = 'job.completed';
/** The event of an ingestion's completion callback (docs/ingestion.md). */
export const EVENT_INGESTION_FINISHED = 'ingestion.finished';
export const DELIVERY_USER_AGENT = 'embedpool';
/** How far (either way) a signature's timestamp may be from the receiver's clock by default. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

const HEX_SHA256 = /^[0-9a-f]{64}$/i;

/** Hex HMAC-SHA256 of `${timestamp}.${body}`; `timestamp` is Unix seconds, `body` the exact bytes sent. */
export function signPayload(secret: string, timestamp: number, body: string | Uint8Array): string {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex');
}

/** The `Embedpool-Signature` value: `t=<timestamp>,v1=<hex>`. */
export function signatureHeader(secret: string, timestamp: number, body: string | Uint8Array): string {
  return `t=${timestamp},v1=${signPayload(secret, timestamp, body)}`;
}

/** Every header of one delivery attempt; `timestamp` (Unix seconds) defaults to now, `event` to job.completed. */
export function deliveryHeaders(opts: {
  secret: string;
  deliveryId: string;
  body: string | Uint8Array;
  timestamp?: number;
  event?: string;
}): Record<string, string> {
  const timestamp = opts.timestamp ?? Math.floor(Date.now() / 1000);
  return {
    'Content-Type': 'application/json',
    'User-Agent': DELIVERY_USER_AGENT,
    [EVENT_HEADER]: opts.event ?? EVENT_JOB_COMPLETED,
    [DELIVERY_ID_HEADER]: opts.deliveryId,
    [SIGNATURE_HEADER]: signatureHeader(opts.secret, timestamp, opts.body),
  };
}

export interface ParsedSignatureHeader {
  timestamp: number;
  /** Every `v1=` value (several while the sender rotates secrets). */
  signatures: string[];
}

/** Parses `t=...,v1=...[,v1=...]`; unknown schemes (`v0=`, ...) are ignored. Null when malformed. */
export function parseSignatureHeader(header: string | null | undefined): ParsedSignatureHeader | null {
  if (typeof header !== 'string' || header.length > 4096) return null;
  let timestamp: number | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') {
      if (!/^\d{1,12}$/.test(value)) return null;
      timestamp = Number(value);
    } else if (key === 'v1' && HEX_SHA256.test(value)) {
      signatures.push(value.toLowerCase());
    }
  }
  if (timestamp === undefined || signatures.length === 0) return null;
  return { timestamp, signatures };
}

export interface VerifyOptions {
  /** Largest allowed distance between the signature's timestamp and `now`, in seconds. Default 300. */
  toleranceSeconds?: number;
  /** The receiver's clock in epoch milliseconds (`Date.now()` style). Default: `Date.now()`. */
  now?: number;
}

export type VerifyResult =
  | { ok: true; timestamp: number }
  | { ok: false; reason: 'malformed' | 'expired' | 'mismatch' };

/**
 * Checks a delivery's signature against one secret or several (rotation: the old and new secret both
 * pass while both are listed). `body` must be the raw request body, byte for byte, before any JSON
 * parsing. Comparisons are constant-time.
 */
export function checkSignature(
  secrets: string | readonly string[],
  header: string | null | undefined,
  body: string | Uint8Array,
  opts: VerifyOptions = {},
): VerifyResult {
  const parsed = parseSignatureHeader(header);
  if (!parsed) return { ok: false, reason: 'malformed' };
  const tolerance = opts.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  const nowSeconds = Math.floor((opts.now ?? Date.now()) / 1000);
  if (Math.abs(nowSeconds - parsed.timestamp) > tolerance) return { ok: false, reason: 'expired' };
  const candidates = parsed.signatures.map((s) => Buffer.from(s, 'hex'));
  let matched = false;
  for (const secret of typeof secrets === 'string' ? [secrets] : secrets) {
    if (!secret) continue;
    const expected = Buffer.from(signPayload(secret, parsed.timestamp, body), 'hex');
    for (const candidate of candidates) {
      // Both are 32 bytes (the header parser only keeps 64-hex-digit values); no early exit.
      if (candidate.length === expected.length && timingSafeEqual(candidate, expected)) matched = true;
    }
  }
  return matched ? { ok: true, timestamp: parsed.timestamp } : { ok: false, reason: 'mismatch' };
}

/** True when the `Embedpool-Signature` header is valid for `body` under any of `secrets`, within tolerance. */
export function verifySignature(
  secrets: string | readonly string[],
  header: string | null | undefined,
  body: string | Uint8Array,
  opts: VerifyOptions = {},
): boolean {
  return checkSignature(secrets, header, body, opts).ok;
}
