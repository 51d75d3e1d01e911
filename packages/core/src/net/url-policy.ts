/**
 * The policy a stranger-supplied URL must pass before any socket is opened: scheme, credentials,
 * and every address its host resolves to (allow list first, then the deny rules).
 */
import { z } from 'zod';
import { EmbedpoolError } from '../errors';
import {
  type AddressClassification,
  addressInCidrs,
  type Cidr,
  classifyAddress,
  parseCidr,
  parseIp,
} from './address-rules';
import { type Resolver, resolveHost, systemResolver } from './resolve';

export interface UrlPolicyOptions {
  /** CIDRs (`127.0.0.0/8`), single addresses, host names (`images.internal`) or `*.suffix` patterns. Wins over the deny rules. */
  allow?: string[];
  /** Also permit RFC 1918, CGNAT 100.64/10 and IPv6 unique-local fc00::/7 (never loopback, link-local, metadata). */
  allowPrivate?: boolean;
  /** Redirects followed for GET/HEAD; one more is URL_TOO_MANY_REDIRECTS. Default 3. */
  maxRedirects?: number;
  /** TCP connect (and TLS handshake) time-out per hop. */
  connectTimeoutMs: number;
  /** Time from sending the request to receiving the complete response headers. */
  headersTimeoutMs: number;
  /** Longest silence allowed between two body chunks. Default: headersTimeoutMs. */
  bodyTimeoutMs?: number;
  /** Deadline for the whole fetch: resolution, every hop, and reading the body. */
  totalTimeoutMs: number;
  /** Largest body accepted, enforced from Content-Length and while streaming. */
  maxBytes: number;
  /** Injectable for tests; defaults to dns.lookup with all: true. */
  resolver?: Resolver;
}

export interface UrlPolicy {
  readonly allowCidrs: readonly Cidr[];
  readonly allowHosts: readonly string[];
  readonly allowHostSuffixes: readonly string[];
  readonly allowPrivate: boolean;
  readonly maxRedirects: number;
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  readonly totalTimeoutMs: number;
  readonly maxBytes: number;
  readonly resolver: Resolver;
}

export interface AddressDecision extends AddressClassification {
  /** Why a denied-by-rule address was let through anyway. */
  allowedBy?: 'allowList' | 'allowHost' | 'allowPrivate';
}

const MAX_URL_LENGTH = 8192;
const PRIVATE_RULES = new Set(['private', 'carrierGradeNat', 'uniqueLocal']);
const ms = z.number().int().positive().max(600_000);

const optionsSchema = z.object({
  allow: z.array(z.string().min(1)).default([]),
  allowPrivate: z.boolean().default(false),
  maxRedirects: z.number().int().min(0).max(20).default(3),
  connectTimeoutMs: ms,
  headersTimeoutMs: ms,
  bodyTimeoutMs: ms.optional(),
  totalTimeoutMs: ms,
  maxBytes: z.number().int().positive(),
  resolver: z.custom<Resolver>((v) => typeof v === 'function', 'resolver must be a function').optional(),
});

/** A host-name allow-list entry, normalized; undefined when it is not a valid host name. */
function normalizeHostEntry(entry: string): string | undefined {
  const name = entry.toLowerCase().replace(/\.$/, '');
  try {
    // Accept only names the WHATWG parser leaves unchanged (rejects `127.1`, `0x7f.1`, `a b`, ...).
    return new URL(`http://${name}/`).hostname === name && parseIp(name) === undefined ? name : undefined;
  } catch {
    return undefined;
  }
}

export function createUrlPolicy(opts: UrlPolicyOptions): UrlPolicy {
  const parsed = optionsSchema.safeParse(opts);
  if (!parsed.success) {
    throw new EmbedpoolError('CONFIG_INVALID', `invalid URL policy: ${z.prettifyError(parsed.error)}`);
  }
  const o = parsed.data;
  const allowCidrs: Cidr[] = [];
  const allowHosts: string[] = [];
  const allowHostSuffixes: string[] = [];
  for (const raw of o.allow) {
    const entry = raw.trim();
    const cidr = parseCidr(entry);
    const wildcard = !cidr && entry.startsWith('*.');
    const host = cidr ? undefined : normalizeHostEntry(wildcard ? entry.slice(2) : entry);
    if (cidr) allowCidrs.push(cidr);
    else if (host && wildcard) allowHostSuffixes.push(`.${host}`);
    else if (host) allowHosts.push(host);
    else {
      const message = `invalid URL policy: allow entry "${raw}" is neither a CIDR nor a host name`;
      throw new EmbedpoolError('CONFIG_INVALID', message);
    }
  }
  return Object.freeze({
    allowCidrs,
    allowHosts,
    allowHostSuffixes,
    allowPrivate: o.allowPrivate,
    maxRedirects: o.maxRedirects,
    connectTimeoutMs: o.connectTimeoutMs,
    headersTimeoutMs: o.headersTimeoutMs,
    bodyTimeoutMs: o.bodyTimeoutMs ?? o.headersTimeoutMs,
    totalTimeoutMs: o.totalTimeoutMs,
    maxBytes: o.maxBytes,
    resolver: o.resolver ?? systemResolver,
  });
}

/** Parses a URL (relative to `base` for redirects) and applies the syntactic rules: http(s), no credentials. */
export function parseTargetUrl(input: string | URL, base?: URL): URL {
  if (typeof input === 'string' && input.length > MAX_URL_LENGTH) {
    throw new EmbedpoolError('URL_INVALID', `URL longer than ${MAX_URL_LENGTH} characters`);
  }
  let url: URL;
  try {
    url = new URL(input, base);
  } catch (err) {
    throw new EmbedpoolError('URL_INVALID', 'invalid URL', { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new EmbedpoolError(
      'URL_SCHEME_NOT_ALLOWED',
      `scheme ${url.protocol} is not allowed (http and https only)`,
      {
        details: { scheme: url.protocol },
      },
    );
  }
  if (url.username !== '' || url.password !== '') {
    throw new EmbedpoolError('URL_CREDENTIALS_NOT_ALLOWED', 'credentials in URLs are not allowed');
  }
  if (url.hostname === '') throw new EmbedpoolError('URL_INVALID', 'URL has no host');
  return url;
}

/** The URL's host without IPv6 brackets (the WHATWG parser has already lower-cased it). */
export function bareHostname(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '');
}

export function isHostAllowListed(host: string, policy: UrlPolicy): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  return policy.allowHosts.includes(name) || policy.allowHostSuffixes.some((s) => name.endsWith(s));
}

/** Allow list, then deny rules, then allowPrivate. `hostAllowed`: the URL's host name is on the allow list. */
export function decideAddress(ip: string, policy: UrlPolicy, hostAllowed = false): AddressDecision {
  const c = classifyAddress(ip);
  if (c.rule === 'invalid') return c;
  if (addressInCidrs(ip, policy.allowCidrs)) return { ...c, allowed: true, allowedBy: 'allowList' };
  if (hostAllowed) return { ...c, allowed: true, allowedBy: 'allowHost' };
  if (c.allowed) return c;
  const directOrMapped = !c.embedded || c.embedded.via === 'ipv4Mapped';
  if (policy.allowPrivate && PRIVATE_RULES.has(c.rule) && directOrMapped) {
    return { ...c, allowed: true, allowedBy: 'allowPrivate' };
  }
  return c;
}

export function addressDeniedError(d: AddressDecision, host: string): EmbedpoolError {
  const via = d.embedded ? `; it embeds IPv4 ${d.embedded.address} (${d.embedded.via})` : '';
  return new EmbedpoolError('URL_ADDRESS_NOT_ALLOWED', `address ${d.address} is ${d.rule} (denied${via})`, {
    details: { rule: d.rule, address: d.address, host, ...(d.embedded ? { embedded: d.embedded } : {}) },
  });
}

/**
 * Resolve, then decide: the URL passes only if EVERY address its host resolves to is allowed.
 * Opens no sockets. The returned addresses are the ones a connection may use (and must: no re-lookup).
 */
export async function checkUrl(
  input: string | URL,
  policy: UrlPolicy,
  opts: { signal?: AbortSignal; base?: URL } = {},
): Promise<{ url: URL; addresses: string[] }> {
  const url = parseTargetUrl(input, opts.base);
  const host = bareHostname(url);
  const literal = parseIp(host);
  const addresses = literal ? [host] : await resolveHost(host, policy.resolver, opts.signal);
  const hostAllowed = !literal && isHostAllowListed(host, policy);
  const checked: string[] = [];
  for (const address of addresses) {
    const decision = decideAddress(address, policy, hostAllowed);
    if (!decision.allowed) throw addressDeniedError(decision, host);
    checked.push(decision.address);
  }
  return { url, addresses: [...new Set(checked)] };
}
