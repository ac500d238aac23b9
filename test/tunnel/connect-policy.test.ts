/**
 * ConnectPolicy on its own: which targets a `connect:` map lets through (host rules never reach
 * special ranges, cidr rules opt them back in, wildcards, port ranges), Basic credentials, and the
 * authority split. Built through the config schema so the defaults are the real ones. Only IP
 * literals and names that fail without any network (RFC 6761 .invalid) are resolved.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connectConfig } from '../../src/config/tunnels.ts';
import { coversSpecialRange, insideSpecialRange } from '../../src/core/special-addresses.ts';
import { ConnectPolicy, splitAuthority } from '../../src/tunnel/connect-policy.ts';

function policy(cfg: Record<string, unknown>): ConnectPolicy {
  return new ConnectPolicy(connectConfig.parse(cfg));
}

const basic = (s: string): string => `Basic ${Buffer.from(s, 'utf8').toString('base64')}`;

const SPECIAL_LITERALS = ['127.0.0.1', '10.1.2.3', '169.254.169.254', '192.168.1.1', '::1', 'fe80::1'];

describe('ConnectPolicy targets', () => {
  it('applies the schema defaults', () => {
    const p = policy({ allow: [{ host: 'example.com', ports: [443] }] });
    assert.equal(p.udp, false);
    assert.equal(p.connectTimeoutMs, 5000);
    assert.equal(p.idleTimeoutMs, 3_600_000);
    assert.equal(p.udpIdleTimeoutMs, 120_000);
    assert.equal(p.maxCapsuleBytes, 65_551);
    assert.deepEqual(p.challenge(), [['proxy-authenticate', 'Basic realm="muxgate"']]);
  });

  it('refuses special ranges named by an exact host rule', async () => {
    for (const ip of SPECIAL_LITERALS) {
      const p = policy({ allow: [{ host: ip, ports: [443] }] });
      assert.equal(await p.resolve(ip, 443), 'connect_denied', ip);
    }
  });

  it('refuses more special ranges, and IPv4-mapped IPv6 spellings of them', async () => {
    const more = [
      '0.0.0.0',
      '100.64.0.1',
      '172.16.5.5',
      '172.31.255.255',
      '192.0.0.8',
      '198.18.0.1',
      '224.0.0.1',
      '255.255.255.255',
      '::',
      'fc00::1',
      'fd12:3456::1',
      'ff02::1',
      '64:ff9b::7f00:1',
      '::ffff:127.0.0.1',
      '::ffff:10.0.0.1',
      '::ffff:7f00:1',
      '::ffff:a9fe:a9fe',
    ];
    for (const ip of more) {
      const p = policy({ allow: [{ host: ip, ports: [443] }] });
      assert.equal(await p.resolve(ip, 443), 'connect_denied', ip);
    }
  });

  it('lets a cidr rule opt a special range back in', async () => {
    const p = policy({
      allow: [
        { cidr: '127.0.0.0/8', ports: [443] },
        { cidr: '10.0.0.0/8', ports: [443] },
        { cidr: '169.254.169.254', ports: [443] },
        { cidr: '192.168.0.0/16', ports: [443] },
        { cidr: '::1', ports: [443] },
        { cidr: 'fe80::/10', ports: [443] },
      ],
    });
    for (const ip of SPECIAL_LITERALS) {
      assert.deepEqual(await p.resolve(ip, 443), { address: ip, family: ip.includes(':') ? 6 : 4 }, ip);
      assert.equal(await p.resolve(ip, 444), 'connect_denied', `${ip} on a port no rule lists`);
    }
    // An IPv4-mapped literal is unmapped before the check and dialled as IPv4.
    assert.deepEqual(await p.resolve('::ffff:127.0.0.1', 443), { address: '127.0.0.1', family: 4 });
    // Outside every listed range.
    assert.equal(await p.resolve('127.0.0.1', 80), 'connect_denied');
    assert.equal(await p.resolve('172.16.0.1', 443), 'connect_denied');
    assert.equal(await p.resolve('93.184.216.34', 443), 'connect_denied');
    assert.equal(await p.resolve('fe80::1', 80), 'connect_denied');
  });

  it('a catch-all rule ("anywhere on 443") reaches public addresses, never special ones', async () => {
    const p = policy({
      allow: [
        { cidr: '0.0.0.0/0', ports: [443] },
        { cidr: '::/0', ports: [443] },
      ],
    });
    // The operator's report: all of these got 200 and reached loopback.
    for (const target of [
      '127.0.0.1',
      '::ffff:127.0.0.1',
      'localhost',
      '0.0.0.0',
      '::1',
      '::',
      '169.254.169.254',
      '10.0.0.1',
      '172.16.0.1',
      '192.168.1.1',
      '100.64.0.1',
      '224.0.0.1',
      '255.255.255.255',
      '192.0.2.1',
      'fe80::1',
      'fd00::1',
      'ff02::1',
      '64:ff9b::7f00:1',
      '2002:7f00:1::1',
      '2001:db8::1',
      '::127.0.0.1',
    ]) {
      assert.equal(await p.resolve(target, 443), 'connect_denied', target);
    }
    assert.deepEqual(await p.resolve('93.184.216.34', 443), { address: '93.184.216.34', family: 4 });
    assert.deepEqual(await p.resolve('2606:4700:4700::1111', 443), { address: '2606:4700:4700::1111', family: 6 });
    assert.equal(await p.resolve('93.184.216.34', 80), 'connect_denied');
  });

  it('a rule partly over a special range reaches only its public part', async () => {
    const p = policy({
      allow: [
        { cidr: '100.0.0.0/8', ports: [443] },
        { cidr: '8.0.0.0/6', ports: [443] },
      ],
    });
    assert.equal(await p.resolve('100.64.0.1', 443), 'connect_denied', 'CGNAT inside 100/8');
    assert.deepEqual(await p.resolve('100.1.2.3', 443), { address: '100.1.2.3', family: 4 });
    assert.equal(await p.resolve('10.1.1.1', 443), 'connect_denied', '10/8 inside 8/6');
    assert.deepEqual(await p.resolve('9.9.9.9', 443), { address: '9.9.9.9', family: 4 });
    // A rule inside the special range reaches exactly that much of it.
    const one = policy({ allow: [{ cidr: '127.0.0.1/32', ports: [443] }] });
    assert.deepEqual(await one.resolve('127.0.0.1', 443), { address: '127.0.0.1', family: 4 });
    assert.equal(await one.resolve('127.0.0.2', 443), 'connect_denied');
  });

  it('knows which rules lie inside, and which cover, a special range', () => {
    for (const c of ['127.0.0.1/32', '127.0.0.0/8', '10.1.0.0/16', '169.254.169.254', '::1', 'fd00::/8', 'fe80::/64']) {
      assert.equal(insideSpecialRange(c), true, c);
      assert.equal(coversSpecialRange(c), false, c);
    }
    for (const c of ['0.0.0.0/0', '::/0', '100.0.0.0/8', '8.0.0.0/6', '192.0.0.0/8', 'fc00::/6', '2000::/3']) {
      assert.equal(insideSpecialRange(c), false, c);
      assert.equal(coversSpecialRange(c), true, c);
    }
    for (const c of ['93.184.216.0/24', '8.8.8.8', '2606:4700::/32']) {
      assert.equal(insideSpecialRange(c), false, c);
      assert.equal(coversSpecialRange(c), false, c);
    }
  });

  it('a cidr rule only opens the ports it lists, even for a named target', async () => {
    const p = policy({
      allow: [
        { host: '127.0.0.1', ports: [80, 443] },
        { cidr: '127.0.0.1', ports: [443] },
      ],
    });
    assert.deepEqual(await p.resolve('127.0.0.1', 443), { address: '127.0.0.1', family: 4 });
    assert.equal(await p.resolve('127.0.0.1', 80), 'connect_denied');
  });

  it('allows a public literal named by an exact host rule, on its ports only', async () => {
    const p = policy({ allow: [{ host: '93.184.216.34', ports: [443] }] });
    assert.deepEqual(await p.resolve('93.184.216.34', 443), { address: '93.184.216.34', family: 4 });
    assert.equal(await p.resolve('93.184.216.34', 80), 'connect_denied');
    assert.equal(await p.resolve('93.184.216.35', 443), 'connect_denied');
    const v6 = policy({ allow: [{ host: '2606:4700:4700::1111', ports: [443] }] });
    assert.deepEqual(await v6.resolve('2606:4700:4700::1111', 443), { address: '2606:4700:4700::1111', family: 6 });
  });

  it('refuses a name no rule lists without resolving it', async () => {
    const p = policy({ allow: [{ host: 'example.com', ports: [443] }] });
    // A name that would fail to resolve comes back denied (not resolve_failed): no lookup was made.
    assert.equal(await p.resolve('nothing-here.invalid', 443), 'connect_denied');
    assert.equal(await p.resolve('example.com', 80), 'connect_denied');
  });

  it('reports a listed name that does not resolve as connect_resolve_failed', async () => {
    const p = policy({ allow: [{ host: '*.invalid', ports: [443] }] });
    assert.equal(await p.resolve('muxgate-test.invalid', 443), 'connect_resolve_failed');
  });

  it('matches a wildcard host rule against subdomains only, case-insensitively', async () => {
    const p = policy({ allow: [{ host: '*.Example.invalid', ports: [443] }] });
    // Matching: the name passes the rule and goes to DNS (which fails for .invalid).
    assert.equal(await p.resolve('a.example.invalid', 443), 'connect_resolve_failed');
    assert.equal(await p.resolve('A.B.EXAMPLE.invalid', 443), 'connect_resolve_failed');
    // Not matching: refused before any lookup.
    assert.equal(await p.resolve('example.invalid', 443), 'connect_denied');
    assert.equal(await p.resolve('.example.invalid', 443), 'connect_denied');
    assert.equal(await p.resolve('badexample.invalid', 443), 'connect_denied');
    assert.equal(await p.resolve('example.invalid.evil.invalid', 443), 'connect_denied');
    assert.equal(await p.resolve('a.example.invalid', 80), 'connect_denied');
  });

  it('an exact host rule matches only that name', async () => {
    const p = policy({ allow: [{ host: 'Exact.invalid', ports: [443] }] });
    assert.equal(await p.resolve('exact.invalid', 443), 'connect_resolve_failed');
    assert.equal(await p.resolve('EXACT.INVALID', 443), 'connect_resolve_failed');
    assert.equal(await p.resolve('sub.exact.invalid', 443), 'connect_denied');
    assert.equal(await p.resolve('exact.invalid.', 443), 'connect_denied');
  });

  it('understands port ranges and lists', async () => {
    const p = policy({ allow: [{ host: '93.184.216.34', ports: ['8000-8100', 443, '9000'] }] });
    for (const port of [8000, 8050, 8100, 443, 9000])
      assert.notEqual(typeof (await p.resolve('93.184.216.34', port)), 'string', `port ${port}`);
    for (const port of [7999, 8101, 442, 444, 8999, 9001])
      assert.equal(await p.resolve('93.184.216.34', port), 'connect_denied', `port ${port}`);
  });

  it('rejects malformed rules in the schema', () => {
    for (const bad of [
      { allow: [] },
      { allow: [{ host: 'a.example', ports: [] }] },
      { allow: [{ host: 'a.example', ports: ['8100-8000'] }] },
      { allow: [{ host: 'a.example', ports: [0] }] },
      { allow: [{ host: 'a.example', ports: [65536] }] },
      { allow: [{ host: 'a.example', cidr: '10.0.0.0/8', ports: [1] }] },
      { allow: [{ ports: [1] }] },
      { allow: [{ cidr: '10.0.0.0/33', ports: [1] }] },
      { allow: [{ host: 'a.example', ports: [1] }], users: [{ user: 'a:b', password: 'x' }] },
      { allow: [{ host: 'a.example', ports: [1] }], realm: 'a"b' },
    ]) {
      assert.equal(connectConfig.safeParse(bad).success, false, JSON.stringify(bad));
    }
  });
});

describe('ConnectPolicy credentials', () => {
  it('accepts everyone when no users are configured', () => {
    const p = policy({ allow: [{ host: 'a.example', ports: [443] }] });
    assert.equal(p.authorized(undefined), true);
    assert.equal(p.authorized('Basic garbage'), true);
  });

  it('checks Basic credentials against every configured user', () => {
    const p = policy({
      allow: [{ host: 'a.example', ports: [443] }],
      users: [
        { user: 'alice', password: 's3cret' },
        { user: 'bob', password: 'pa:ss word' },
      ],
      realm: 'corp proxy',
    });
    assert.deepEqual(p.challenge(), [['proxy-authenticate', 'Basic realm="corp proxy"']]);
    assert.equal(p.authorized(basic('alice:s3cret')), true);
    assert.equal(p.authorized(basic('bob:pa:ss word')), true, 'a password may hold ":" and spaces');
    // The scheme is case-insensitive (RFC 9110 §11.1).
    assert.equal(p.authorized(`basic ${Buffer.from('alice:s3cret').toString('base64')}`), true);
    assert.equal(p.authorized(`BASIC ${Buffer.from('alice:s3cret').toString('base64')}`), true);
    // Wrong.
    assert.equal(p.authorized(basic('alice:wrong')), false);
    assert.equal(p.authorized(basic('alice:s3cret ')), false);
    assert.equal(p.authorized(basic('alice:pa:ss word')), false, "bob's password is not alice's");
    assert.equal(p.authorized(basic('carol:s3cret')), false);
    assert.equal(p.authorized(basic('alice')), false);
    assert.equal(p.authorized(basic('')), false);
    // Missing or malformed.
    assert.equal(p.authorized(undefined), false);
    assert.equal(p.authorized(''), false);
    assert.equal(p.authorized('Basic'), false);
    assert.equal(p.authorized('Basic '), false);
    assert.equal(p.authorized(`Bearer ${Buffer.from('alice:s3cret').toString('base64')}`), false);
    assert.equal(p.authorized(`Basic ${Buffer.from('alice:s3cret').toString('base64')} extra`), false);
    assert.equal(p.authorized('Basic !!!not-base64!!!'), false);
    assert.equal(p.authorized('alice:s3cret'), false);
  });
});

describe('splitAuthority', () => {
  it('splits host:port and bracketed IPv6', () => {
    assert.deepEqual(splitAuthority('[::1]:443'), { host: '::1', port: 443 });
    assert.deepEqual(splitAuthority('[2001:db8::1]:8443'), { host: '2001:db8::1', port: 8443 });
    assert.deepEqual(splitAuthority('example.com:443'), { host: 'example.com', port: 443 });
    assert.deepEqual(splitAuthority('127.0.0.1:1'), { host: '127.0.0.1', port: 1 });
    assert.deepEqual(splitAuthority('127.0.0.1:65535'), { host: '127.0.0.1', port: 65535 });
  });

  it('returns null for what is not host:port', () => {
    for (const bad of [
      'example.com',
      ':443',
      '[::1]',
      '[]:443',
      'example.com:',
      'example.com:0',
      'example.com:65536',
      'example.com:44x',
      'example.com:4.5',
      'example.com:-1',
    ])
      assert.equal(splitAuthority(bad), null, bad);
  });
});
