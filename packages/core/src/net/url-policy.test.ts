// Resolve-then-decide with an injected resolver: no DNS, no sockets.

import { fakeResolver } from '@embedpool/testkit/loopback-test-kit';
import { describe, expect, it } from 'vitest';
import { EmbedpoolError } from '../errors';
import { checkUrl, createUrlPolicy, decideAddress, type UrlPolicyOptions } from './url-policy';

const LIMITS = { connectTimeoutMs: 500, headersTimeoutMs: 500, totalTimeoutMs: 1000, maxBytes: 1024 };

function policy(extra: Partial<UrlPolicyOptions> = {}, table: Parameters<typeof fakeResolver>[0] = {}) {
  const resolver = fakeResolver(table);
  return { policy: createUrlPolicy({ ...LIMITS, resolver, ...extra }), resolver };
}

async function rejection(promise: Promise<unknown>): Promise<EmbedpoolError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EmbedpoolError);
  return err as EmbedpoolError;
}

const DENIED: [string, string][] = [
  ['10.0.0.1', 'private'],
  ['172.16.0.1', 'private'],
  ['192.168.1.1', 'private'],
  ['100.64.0.1', 'carrierGradeNat'],
  ['169.254.169.254', 'linkLocal'],
  ['0.0.0.0', 'unspecified'],
  ['255.255.255.255', 'broadcast'],
  ['224.0.0.1', 'multicast'],
  ['fe80::1', 'linkLocal'],
  ['fc00::1', 'uniqueLocal'],
  ['::1', 'loopback'],
  ['::', 'unspecified'],
  ['::ffff:10.0.0.1', 'private'],
  ['::ffff:127.0.0.1', 'loopback'],
  ['64:ff9b::a00:1', 'private'],
  ['2002:0a00:0001::1', 'private'],
  ['127.0.0.1', 'loopback'],
];

describe('checkUrl with an injected resolver', () => {
  it.each(DENIED)('refuses a host resolving to %s (%s)', async (address, rule) => {
    const { policy: p } = policy({}, { 'target.test': [address] });
    const err = await rejection(checkUrl('http://target.test/image.png', p));
    expect(err.code).toBe('URL_ADDRESS_NOT_ALLOWED');
    expect(err.details).toMatchObject({ rule, host: 'target.test' });
    expect(err.message).toMatch(new RegExp(`^address \\S+ is ${rule} \\(denied`));
  });

  it('names the rule in the message', async () => {
    const { policy: p } = policy({}, { 'target.test': ['127.0.0.1'] });
    const err = await rejection(checkUrl('http://target.test/', p));
    expect(err.message).toBe('address 127.0.0.1 is loopback (denied)');
    expect(err.details).toEqual({ rule: 'loopback', address: '127.0.0.1', host: 'target.test' });
  });

  it.each(['8.8.8.8', '93.184.216.34', '2606:4700::1111'])(
    'accepts a host resolving to %s',
    async (address) => {
      const { policy: p } = policy({}, { 'public.test': [address] });
      const { url, addresses } = await checkUrl('https://public.test/a.jpg', p);
      expect(url.href).toBe('https://public.test/a.jpg');
      expect(addresses).toEqual([address]);
    },
  );

  it('refuses a host whose answers mix public and private addresses', async () => {
    const { policy: p } = policy({}, { 'mixed.test': ['93.184.216.34', '2606:4700::1111', '10.0.0.1'] });
    const err = await rejection(checkUrl('http://mixed.test/', p));
    expect(err.code).toBe('URL_ADDRESS_NOT_ALLOWED');
    expect(err.details).toMatchObject({ rule: 'private', address: '10.0.0.1' });
  });

  it.each([
    ['http://127.0.0.1/', 'loopback'],
    ['http://127.1/', 'loopback'],
    ['http://2130706433/', 'loopback'],
    ['http://0177.0.0.1/', 'loopback'],
    ['http://0x7f.1/', 'loopback'],
    ['http://0x7f000001/', 'loopback'],
    ['http://%31%32%37.0.0.1/', 'loopback'],
    ['http://0/', 'unspecified'],
    ['http://[::1]/', 'loopback'],
    ['http://[::ffff:127.0.0.1]/', 'loopback'],
    ['http://[0:0:0:0:0:ffff:a9fe:a9fe]/', 'linkLocal'],
    ['http://[::127.0.0.1]/', 'ipv4Compatible'],
    ['http://169.254.169.254/latest/meta-data/', 'linkLocal'],
    ['http://0xa9fea9fe/', 'linkLocal'],
  ])('normalizes the IP literal in %s the WHATWG way and refuses it (%s) without DNS', async (url, rule) => {
    const { policy: p, resolver } = policy();
    const err = await rejection(checkUrl(url, p));
    expect(err.code).toBe('URL_ADDRESS_NOT_ALLOWED');
    expect(err.details).toMatchObject({ rule });
    expect(resolver.calls.size).toBe(0);
  });

  it.each([
    ['ftp://example.test/', 'URL_SCHEME_NOT_ALLOWED'],
    ['file:///etc/passwd', 'URL_SCHEME_NOT_ALLOWED'],
    ['gopher://example.test/', 'URL_SCHEME_NOT_ALLOWED'],
    ['data:text/plain,hi', 'URL_SCHEME_NOT_ALLOWED'],
    ['http://user:pass@example.test/', 'URL_CREDENTIALS_NOT_ALLOWED'],
    ['http://user@example.test/', 'URL_CREDENTIALS_NOT_ALLOWED'],
    ['not a url', 'URL_INVALID'],
    ['http://1.2.3.4.5/', 'URL_INVALID'],
    [`http://example.test/${'a'.repeat(9000)}`, 'URL_INVALID'],
  ])('refuses %s with %s before resolving', async (url, code) => {
    const { policy: p, resolver } = policy({}, { 'example.test': ['8.8.8.8'] });
    expect((await rejection(checkUrl(url, p))).code).toBe(code);
    expect(resolver.calls.size).toBe(0);
  });

  it('maps resolver failures and empty answers to URL_DNS_FAILED', async () => {
    const { policy: p } = policy({}, { 'empty.test': [] });
    const missing = await rejection(checkUrl('http://missing.test/', p));
    expect(missing.code).toBe('URL_DNS_FAILED');
    expect(missing.details).toMatchObject({ host: 'missing.test', code: 'ENOTFOUND' });
    expect((await rejection(checkUrl('http://empty.test/', p))).code).toBe('URL_DNS_FAILED');
  });
});

describe('allow list and allowPrivate', () => {
  it('lets allowed CIDRs through, and only those', async () => {
    const { policy: p } = policy(
      { allow: ['127.0.0.0/8', 'fd00::/8'] },
      { 'svc.test': ['127.0.0.5', 'fd00::5'] },
    );
    expect((await checkUrl('http://svc.test/', p)).addresses).toEqual(['127.0.0.5', 'fd00::5']);
    expect((await checkUrl('http://[::ffff:127.0.0.1]/', p)).addresses).toEqual(['::ffff:7f00:1']);
    const err = await rejection(checkUrl('http://[::1]/', p));
    expect(err.details).toMatchObject({ rule: 'loopback' });
  });

  it('lets allowed host names (exact and *.suffix) through whatever they resolve to', async () => {
    const { policy: p } = policy(
      { allow: ['images.internal', '*.corp.test'] },
      {
        'images.internal': ['10.1.2.3'],
        'images.internal.': ['10.1.2.4'],
        'a.corp.test': ['192.168.0.9'],
        'corp.test': ['10.0.0.1'],
      },
    );
    expect((await checkUrl('http://IMAGES.internal/x', p)).addresses).toEqual(['10.1.2.3']);
    expect((await checkUrl('http://images.internal./x', p)).addresses).toEqual(['10.1.2.4']);
    expect((await checkUrl('http://a.corp.test/x', p)).addresses).toEqual(['192.168.0.9']);
    expect((await rejection(checkUrl('http://corp.test/x', p))).code).toBe('URL_ADDRESS_NOT_ALLOWED');
  });

  it('allowPrivate admits RFC 1918, CGNAT and unique-local but never loopback or link-local', () => {
    const { policy: p } = policy({ allowPrivate: true });
    for (const ip of ['10.0.0.1', '192.168.1.1', '100.64.0.1', 'fd00::1', '::ffff:10.0.0.1']) {
      expect(decideAddress(ip, p), ip).toMatchObject({ allowed: true, allowedBy: 'allowPrivate' });
    }
    for (const ip of ['127.0.0.1', '169.254.169.254', 'fe80::1', '::1', '0.0.0.0', '64:ff9b::a00:1']) {
      expect(decideAddress(ip, p).allowed, ip).toBe(false);
    }
  });

  it('rejects invalid options with CONFIG_INVALID', () => {
    const bad: UrlPolicyOptions[] = [
      { ...LIMITS, allow: ['127.1/8'] },
      { ...LIMITS, allow: ['not a host'] },
      { ...LIMITS, allow: ['10.0.0.0/40'] },
      { ...LIMITS, maxBytes: 0 },
      { ...LIMITS, maxRedirects: -1 },
      { ...LIMITS, connectTimeoutMs: 1.5 },
    ];
    for (const opts of bad) {
      expect(() => createUrlPolicy(opts), JSON.stringify(opts)).toThrow(
        expect.objectContaining({ code: 'CONFIG_INVALID' }),
      );
    }
  });

  it('has defaults for the optional settings', () => {
    const p = createUrlPolicy(LIMITS);
    expect(p).toMatchObject({ maxRedirects: 3, allowPrivate: false, bodyTimeoutMs: 500, allowCidrs: [] });
  });
});
