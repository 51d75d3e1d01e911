// Pure classification: no DNS, no sockets.
import { describe, expect, it } from 'vitest';
import { addressInCidrs, classifyAddress, parseCidr } from './address-rules';

describe('classifyAddress', () => {
  it.each([
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'carrierGradeNat'],
    ['169.254.169.254', 'linkLocal'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['255.255.255.255', 'broadcast'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['192.0.0.8', 'reserved'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.1', 'documentation'],
    ['198.51.100.7', 'documentation'],
    ['203.0.113.9', 'documentation'],
    ['198.18.0.1', 'benchmarking'],
    ['198.19.255.255', 'benchmarking'],
    ['fe80::1', 'linkLocal'],
    ['fe80::1%eth0', 'linkLocal'],
    ['fc00::1', 'uniqueLocal'],
    ['fd12:3456::1', 'uniqueLocal'],
    ['fec0::1', 'deprecatedSiteLocal'],
    ['ff02::1', 'multicast'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:169.254.169.254', 'linkLocal'],
    ['::127.0.0.1', 'ipv4Compatible'],
    ['::8.8.8.8', 'ipv4Compatible'],
    ['::ffff:0:808:808', 'ipv4Translated'],
    ['64:ff9b::a00:1', 'private'],
    ['64:ff9b::7f00:1', 'loopback'],
    ['64:ff9b:1::808:808', 'nat64Local'],
    ['2002:0a00:0001::1', 'private'],
    ['2002:7f00:1::', 'loopback'],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'teredo'],
    ['2001:db8::1', 'documentation'],
    ['3fff::1', 'documentation'],
    ['2001:2::1', 'benchmarking'],
    ['100::1', 'discard'],
    ['5f00::1', 'segmentRouting'],
    ['1::1', 'notGlobalUnicast'],
    ['4000::1', 'notGlobalUnicast'],
  ])('denies %s as %s', (ip, rule) => {
    expect(classifyAddress(ip)).toMatchObject({ allowed: false, rule });
  });

  it.each([
    '8.8.8.8',
    '93.184.216.34',
    '1.1.1.1',
    '2606:4700::1111',
    '2a00:1450:4001:80b::200e',
    '::ffff:8.8.8.8',
    '64:ff9b::808:808',
    '2002:808:808::1',
  ])('accepts %s as unicast (classification only)', (ip) => {
    expect(classifyAddress(ip)).toMatchObject({ allowed: true, rule: 'unicast' });
  });

  it('names the embedded IPv4 address and how it is embedded', () => {
    expect(classifyAddress('::ffff:127.0.0.1')).toEqual({
      allowed: false,
      rule: 'loopback',
      address: '::ffff:7f00:1',
      embedded: { address: '127.0.0.1', via: 'ipv4Mapped' },
    });
    expect(classifyAddress('64:ff9b::a00:1').embedded).toEqual({ address: '10.0.0.1', via: 'nat64' });
    expect(classifyAddress('2002:0a00:0001::1').embedded).toEqual({ address: '10.0.0.1', via: '6to4' });
  });

  it.each(['127.1', '0x7f.1', '0177.0.0.1', '2130706433', 'localhost', '', '1.2.3.4.5', '::ffff:1.2.3'])(
    'refuses the non-canonical or non-IP string %j as invalid',
    (ip) => {
      expect(classifyAddress(ip)).toMatchObject({ allowed: false, rule: 'invalid' });
    },
  );

  it('canonicalizes IPv6 (RFC 5952) and accepts bracketed literals', () => {
    expect(classifyAddress('[0:0:0:0:0:0:0:1]')).toMatchObject({ address: '::1', rule: 'loopback' });
    expect(classifyAddress('2606:4700:0:0:0:0:0:1111').address).toBe('2606:4700::1111');
  });
});

describe('parseCidr / addressInCidrs', () => {
  it('parses CIDRs and bare addresses strictly', () => {
    expect(parseCidr('127.0.0.0/8')?.[1]).toBe(8);
    expect(parseCidr('127.0.0.2')?.[1]).toBe(32);
    expect(parseCidr('fd00::/8')?.[1]).toBe(8);
    expect(parseCidr('::1')?.[1]).toBe(128);
    for (const bad of [
      '127.1/8',
      '0x7f.0.0.1/8',
      '10.0.0.0/33',
      '::/129',
      '10.0.0.0/',
      '10.0.0.0/x',
      'host',
    ]) {
      expect(parseCidr(bad), bad).toBeUndefined();
    }
  });

  it('matches IPv4-mapped addresses against IPv4 ranges', () => {
    const list = [parseCidr('127.0.0.0/8')!];
    expect(addressInCidrs('127.0.0.5', list)).toBe(true);
    expect(addressInCidrs('::ffff:127.0.0.5', list)).toBe(true);
    expect(addressInCidrs('128.0.0.1', list)).toBe(false);
    expect(addressInCidrs('::1', list)).toBe(false);
    expect(addressInCidrs('not-an-ip', list)).toBe(false);
  });
});
