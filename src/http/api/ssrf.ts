/**
 * The web checker's SSRF guard: which addresses a check started over HTTP may connect to.
 *
 * The checker connects wherever a (possibly anonymous-ish, logged-in) console user points it, from
 * inside the operator's network. Unless the operator allows it (`http.checkPrivateTargets`), every
 * address that is not globally routable unicast is refused: private (RFC 1918), loopback, link-local,
 * unique-local (RFC 4193), CGNAT (RFC 6598), multicast, unspecified, reserved and documentation
 * ranges, and IPv6 forms that embed such an IPv4 address (mapped, NAT64, 6to4).
 *
 * Invariants: the decision is made on the address literal that is then connected to (callers
 * resolve once, check every A and AAAA, and pass the checked address to the checker: no second
 * resolution, so no DNS rebinding between the check and the connect); a string that is not an IP
 * address is refused.
 */
import net from 'node:net';

const V4_BLOCKED: Array<[string, number, string]> = [
  ['0.0.0.0', 8, 'unspecified/"this network" (RFC 1122 §3.2.1.3)'],
  ['10.0.0.0', 8, 'private (RFC 1918)'],
  ['100.64.0.0', 10, 'CGNAT shared space (RFC 6598)'],
  ['127.0.0.0', 8, 'loopback (RFC 1122)'],
  ['169.254.0.0', 16, 'link-local (RFC 3927)'],
  ['172.16.0.0', 12, 'private (RFC 1918)'],
  ['192.0.0.0', 24, 'IETF protocol assignments (RFC 6890)'],
  ['192.0.2.0', 24, 'documentation (RFC 5737)'],
  ['192.88.99.0', 24, '6to4 relay anycast (RFC 7526)'],
  ['192.168.0.0', 16, 'private (RFC 1918)'],
  ['198.18.0.0', 15, 'benchmarking (RFC 2544)'],
  ['198.51.100.0', 24, 'documentation (RFC 5737)'],
  ['203.0.113.0', 24, 'documentation (RFC 5737)'],
  ['224.0.0.0', 4, 'multicast (RFC 5771)'],
  ['240.0.0.0', 4, 'reserved (RFC 1112), incl. broadcast'],
];

const V6_BLOCKED: Array<[string, number, string]> = [
  ['::', 128, 'unspecified (RFC 4291 §2.5.2)'],
  ['::1', 128, 'loopback (RFC 4291 §2.5.3)'],
  ['100::', 64, 'discard-only (RFC 6666)'],
  ['2001:db8::', 32, 'documentation (RFC 3849)'],
  ['fc00::', 7, 'unique-local (RFC 4193)'],
  ['fe80::', 10, 'link-local (RFC 4291 §2.5.6)'],
  ['fec0::', 10, 'site-local (deprecated, RFC 3879)'],
  ['ff00::', 8, 'multicast (RFC 4291 §2.7)'],
];

function v4ToInt(a: string): number {
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

function v4Reason(address: string): string | null {
  const n = v4ToInt(address);
  for (const [net4, bits, why] of V4_BLOCKED) {
    const base = v4ToInt(net4);
    const size = 2 ** (32 - bits);
    if (n >= base && n < base + size) return why;
  }
  return null;
}

/** The 8 groups of an IPv6 address as numbers (handles `::` and a trailing dotted IPv4). */
function v6Groups(address: string): number[] {
  let a = address.toLowerCase();
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (dotted?.[1] !== undefined) {
    const n = v4ToInt(dotted[1]);
    a = a.slice(0, -dotted[1].length) + `${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head = '', tail] = a.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((g) => parseInt(g, 16));
}

function inV6(groups: number[], network: string, bits: number): boolean {
  const n = v6Groups(network);
  for (let i = 0; i < 8; i++) {
    const take = Math.max(0, Math.min(16, bits - i * 16));
    if (take === 0) return true;
    const mask = (0xffff << (16 - take)) & 0xffff;
    if (((groups[i] ?? 0) & mask) !== ((n[i] ?? 0) & mask)) return false;
  }
  return true;
}

function embeddedV4(hi: number, lo: number): string {
  return `${hi >>> 8}.${hi & 0xff}.${lo >>> 8}.${lo & 0xff}`;
}

/**
 * Why a connection to `address` must be refused by the web checker, or null when it is a global
 * unicast address. Anything that is not an IP literal is refused.
 */
export function privateAddressReason(address: string): string | null {
  const kind = net.isIP(address);
  if (kind === 4) return v4Reason(address);
  if (kind !== 6) return 'not an IP address';
  const g = v6Groups(address);
  for (const [net6, bits, why] of V6_BLOCKED) if (inV6(g, net6, bits)) return why;
  // IPv4-mapped ::ffff:a.b.c.d (RFC 4291 §2.5.5.2) and IPv4-compatible ::a.b.c.d (deprecated):
  // the socket reaches the IPv4 address, so judge that.
  if (inV6(g, '::ffff:0:0', 96) || inV6(g, '::', 96)) {
    const r = v4Reason(embeddedV4(g[6] ?? 0, g[7] ?? 0));
    return r === null ? null : `IPv4-embedded ${r}`;
  }
  // NAT64 well-known prefix (RFC 6052 §2.1) and 6to4 (RFC 3056 §2): they lead to an IPv4 address.
  if (inV6(g, '64:ff9b::', 96)) {
    const r = v4Reason(embeddedV4(g[6] ?? 0, g[7] ?? 0));
    if (r !== null) return `NAT64 of ${r}`;
  }
  if (inV6(g, '2002::', 16)) {
    const r = v4Reason(embeddedV4(g[1] ?? 0, g[2] ?? 0));
    if (r !== null) return `6to4 of ${r}`;
  }
  return null;
}
