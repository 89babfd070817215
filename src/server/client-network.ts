/**
 * Which connections count as one client for per-client limits. An IPv4 address is one client
 * (or, for the AUTH limiter, its /24); an IPv6 host or site is given a whole /64 (RFC 6177,
 * RFC 7421), so counting per IPv6 address would let one host open 2^64 "clients".
 *
 * Invariants: pure string work, no allocation beyond the key; the key of an IPv4-mapped IPv6
 * address ("::ffff:1.2.3.4") is that of the IPv4 address; a malformed address is its own key.
 */
import net from 'node:net';

/** The key for `ip` at the given prefix lengths (defaults: IPv4 /32, IPv6 /64). */
export function clientKey(ip: string, v4Bits = 32, v6Bits = 64): string {
  if (ip.startsWith('::ffff:') && ip.includes('.')) ip = ip.slice(7);
  const kind = net.isIP(ip);
  if (kind === 4) {
    if (v4Bits >= 32) return ip;
    const n = ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
    const masked = v4Bits <= 0 ? 0 : n - (n % 2 ** (32 - v4Bits));
    return `${[24, 16, 8, 0].map((s) => Math.floor(masked / 2 ** s) % 256).join('.')}/${v4Bits}`;
  }
  if (kind === 6) {
    const groups = expandIpv6(ip);
    if (groups === null) return ip;
    const bits = Math.max(0, Math.min(128, v6Bits));
    const out: string[] = [];
    for (let i = 0; i < 8; i++) {
      const keep = Math.max(0, Math.min(16, bits - i * 16));
      const g = groups[i] ?? 0;
      out.push((keep === 16 ? g : keep === 0 ? 0 : g & (0xffff << (16 - keep)) & 0xffff).toString(16));
    }
    return `${out.join(':')}/${bits}`;
  }
  return ip;
}

/** Eight 16-bit groups of an IPv6 address (a trailing dotted IPv4 part included), or null. */
function expandIpv6(ip: string): number[] | null {
  const zone = ip.indexOf('%');
  if (zone >= 0) ip = ip.slice(0, zone);
  const lastColon = ip.lastIndexOf(':');
  const last = ip.slice(lastColon + 1);
  if (last.includes('.')) {
    // "::ffff:1.2.3.4" and friends: the dotted part is the last two groups.
    const p = last.split('.').map(Number);
    if (p.length !== 4 || p.some((x) => !(x >= 0 && x <= 255))) return null;
    const hex = (a: number, b: number): string => ((a << 8) | b).toString(16);
    ip = `${ip.slice(0, lastColon + 1)}${hex(p[0] ?? 0, p[1] ?? 0)}:${hex(p[2] ?? 0, p[3] ?? 0)}`;
  }
  const halves = ip.split('::');
  if (halves.length > 2) return null;
  const parse = (h: string | undefined): number[] => (h === undefined || h === '' ? [] : h.split(':').map((x) => (/^[0-9a-fA-F]{1,4}$/.test(x) ? parseInt(x, 16) : NaN)));
  const head = parse(halves[0]);
  let groups = head;
  if (halves.length === 2) {
    const rest = parse(halves[1]);
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return null;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  }
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g))) return null;
  return groups;
}
