/**
 * Pure address classification: is an IP address one that a stranger-supplied URL may reach?
 *
 * Default deny. IPv4 must fall in ipaddr.js's `unicast` range; IPv6 must be global unicast
 * (2000::/3) and outside every special range. Addresses that embed an IPv4 address (IPv4-mapped,
 * NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by the embedded IPv4 address. No I/O here.
 */
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

export type IpAddress = ipaddr.IPv4 | ipaddr.IPv6;
export type Cidr = [IpAddress, number];

export interface AddressClassification {
  allowed: boolean;
  /** The rule that decided: `unicast` when allowed, otherwise the range name (`loopback`, `private`, ...). */
  rule: string;
  /** Canonical spelling of the address (RFC 5952 for IPv6), or the input when it is not an IP. */
  address: string;
  /** For addresses that embed an IPv4 address: that address, and how it is embedded. */
  embedded?: { address: string; via: 'ipv4Mapped' | 'nat64' | '6to4' };
}

const cidrs = (...list: string[]): Cidr[] => list.map((c) => ipaddr.parseCIDR(c));

/** Checked before ipaddr.js's own `range()`, so these get a precise name (ipaddr calls most `reserved`). */
const IPV4_RULES: [string, Cidr[]][] = [
  ['documentation', cidrs('192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24')],
  ['benchmarking', cidrs('198.18.0.0/15')],
  ['reserved', cidrs('192.0.0.0/24', '240.0.0.0/4')],
];

const IPV6_RULES: [string, Cidr[]][] = [
  ['documentation', cidrs('2001:db8::/32', '3fff::/20')],
  ['benchmarking', cidrs('2001:2::/48')],
  ['teredo', cidrs('2001::/32')],
  ['nat64Local', cidrs('64:ff9b:1::/48')],
  ['ipv4Translated', cidrs('::ffff:0:0:0/96')],
  ['ipv4Compatible', cidrs('::/96')],
];

const NAT64 = ipaddr.parseCIDR('64:ff9b::/96');
const SIX_TO_FOUR = ipaddr.parseCIDR('2002::/16');
const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');

/**
 * Parses an IP address strictly: canonical dotted-quad IPv4 (no `127.1`, `0x7f.1`, `0177.0.0.1`) or
 * RFC 4291 IPv6, optionally in brackets. IPv6 is first rewritten by the WHATWG URL parser into hex
 * groups, because ipaddr.js reads `::a.b.c.d` (IPv4-compatible) as `::ffff:a.b.c.d` (IPv4-mapped).
 * A zone id (`fe80::1%eth0`) is ignored for classification.
 */
export function parseIp(ip: string): IpAddress | undefined {
  const bare = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  const version = isIP(bare);
  try {
    if (version === 4) return ipaddr.IPv4.parse(bare);
    if (version !== 6) return undefined;
    const hex = new URL(`http://[${bare.replace(/%.*$/, '')}]/`).hostname.slice(1, -1);
    return ipaddr.IPv6.parse(hex);
  } catch {
    return undefined;
  }
}

export function canonicalIp(addr: IpAddress): string {
  return addr.kind() === 'ipv6' ? (addr as ipaddr.IPv6).toRFC5952String() : addr.toString();
}

function inAny(addr: IpAddress, list: Cidr[]): boolean {
  return list.some(([net, bits]) => net.kind() === addr.kind() && addr.match(net, bits));
}

function firstRule(addr: IpAddress, rules: [string, Cidr[]][]): string | undefined {
  return rules.find(([, list]) => inAny(addr, list))?.[0];
}

function ipv4Rule(addr: ipaddr.IPv4): string {
  const range = addr.range();
  if (range === 'unspecified' || range === 'broadcast') return range;
  return firstRule(addr, IPV4_RULES) ?? range;
}

/** The IPv4 address held in two 16-bit IPv6 groups. */
function ipv4FromGroups(hi: number, lo: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
}

function embeddedIpv4(
  addr: ipaddr.IPv6,
): { v4: ipaddr.IPv4; via: 'ipv4Mapped' | 'nat64' | '6to4' } | undefined {
  const p = addr.parts;
  if (addr.isIPv4MappedAddress()) return { v4: ipv4FromGroups(p[6]!, p[7]!), via: 'ipv4Mapped' };
  if (addr.match(NAT64)) return { v4: ipv4FromGroups(p[6]!, p[7]!), via: 'nat64' };
  if (addr.match(SIX_TO_FOUR)) return { v4: ipv4FromGroups(p[1]!, p[2]!), via: '6to4' };
  return undefined;
}

function ipv6Rule(addr: ipaddr.IPv6): string {
  const range = addr.range() as string;
  // `::` and `::1` sit inside ::/96 (IPv4-compatible); name them first.
  if (range === 'unspecified' || range === 'loopback') return range;
  const named = firstRule(addr, IPV6_RULES);
  if (named) return named;
  if (range !== 'unicast') return range;
  return addr.match(GLOBAL_UNICAST_V6) ? 'unicast' : 'notGlobalUnicast';
}

/** Classifies one IP address against the deny rules. Pure: no DNS, no sockets, no allow list. */
export function classifyAddress(ip: string): AddressClassification {
  const addr = parseIp(ip);
  if (!addr) return { allowed: false, rule: 'invalid', address: ip };
  const address = canonicalIp(addr);
  if (addr.kind() === 'ipv4') {
    const rule = ipv4Rule(addr as ipaddr.IPv4);
    return { allowed: rule === 'unicast', rule, address };
  }
  const v6 = addr as ipaddr.IPv6;
  const embedded = embeddedIpv4(v6);
  if (embedded) {
    const rule = ipv4Rule(embedded.v4);
    return {
      allowed: rule === 'unicast',
      rule,
      address,
      embedded: { address: embedded.v4.toString(), via: embedded.via },
    };
  }
  const rule = ipv6Rule(v6);
  return { allowed: rule === 'unicast', rule, address };
}

/** True when `ip` lies in one of `list`; an IPv4-mapped IPv6 address also matches IPv4 ranges. */
export function addressInCidrs(ip: string, list: readonly Cidr[]): boolean {
  const addr = parseIp(ip);
  if (!addr) return false;
  const candidates: IpAddress[] = [addr];
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
    candidates.push((addr as ipaddr.IPv6).toIPv4Address());
  }
  return candidates.some((a) => inAny(a, list as Cidr[]));
}

/** Parses `10.0.0.0/8`, `fd00::/8` or a bare address (as a /32 or /128). Strict: canonical spellings only. */
export function parseCidr(entry: string): Cidr | undefined {
  const slash = entry.indexOf('/');
  const ipPart = slash === -1 ? entry : entry.slice(0, slash);
  const addr = parseIp(ipPart);
  if (!addr) return undefined;
  const max = addr.kind() === 'ipv4' ? 32 : 128;
  if (slash === -1) return [addr, max];
  const bitsText = entry.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bitsText)) return undefined;
  const bits = Number(bitsText);
  return bits <= max ? [addr, bits] : undefined;
}
