/**
 * One DNS resolver for every lookup the checker makes (MX, A/AAAA, TXT, TLSA), speaking DNS over
 * UDP with dns-packet, because Node 20 has neither dns.resolveTlsa nor the DNSSEC AD bit.
 *
 * Invariants: every query has a timeout and one retry; a reply is accepted only when its id and
 * question match ours (off-path spoofing); the AD bit is reported as given by the resolver — the
 * checker does not validate DNSSEC itself, so "validated" means "the resolver said so" (RFC 6840
 * §5.7: only trust AD from a resolver on a secure path). A truncated reply is an error here
 * (we ask for a 1232-byte EDNS payload; TCP fallback is not implemented).
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import dnsPacket from 'dns-packet';
import { PostsealError } from '../errors.js';

export type RecordType = 'MX' | 'A' | 'AAAA' | 'TXT' | 'TLSA';

export interface QueryResult {
  rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED' | 'OTHER';
  /** The resolver set the AD bit (DNSSEC validated by the resolver). */
  ad: boolean;
  answers: dnsPacket.Answer[];
}

export interface Tlsa {
  usage: number;
  selector: number;
  matchingType: number;
  data: Buffer;
}

const RCODES = { 0: 'NOERROR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 5: 'REFUSED' } as const;

export class DnsResolver {
  constructor(
    readonly server: { host: string; port: number },
    readonly timeoutMs = 5000,
  ) {}

  /** The first system resolver (port 53), as node:dns knows it. */
  static system(timeoutMs?: number): DnsResolver {
    const first = dns.getServers()[0];
    if (first === undefined) throw new PostsealError('CHECK_DNS', 'no system DNS resolver configured');
    const m = /^\[(.+)\]:(\d+)$/.exec(first);
    return new DnsResolver(m ? { host: m[1] ?? '', port: Number(m[2]) } : { host: first, port: 53 }, timeoutMs);
  }

  async query(name: string, type: RecordType): Promise<QueryResult> {
    let last: unknown = null;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        return await this.once(name, type);
      } catch (e) {
        last = e;
      }
    }
    throw last instanceof Error ? last : new PostsealError('CHECK_DNS', String(last));
  }

  private once(name: string, type: RecordType): Promise<QueryResult> {
    const id = randomInt(0, 65536);
    const query = dnsPacket.encode({
      type: 'query',
      id,
      // RFC 6840 §5.7: ask for the AD bit; DO makes validating resolvers include DNSSEC data.
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.AUTHENTIC_DATA,
      questions: [{ type, name }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: dnsPacket.DNSSEC_OK } as dnsPacket.Answer],
    });
    const sock = dgram.createSocket(net.isIPv6(this.server.host) ? 'udp6' : 'udp4');
    return new Promise((resolve, reject) => {
      const done = (err: Error | null, r?: QueryResult): void => {
        clearTimeout(timer);
        sock.close();
        if (err) reject(err);
        else if (r) resolve(r);
      };
      const timer = setTimeout(() => done(new PostsealError('CHECK_DNS', `no DNS answer for ${name} ${type} within ${this.timeoutMs} ms`)), this.timeoutMs);
      sock.on('error', (e) => done(new PostsealError('CHECK_DNS', `DNS query ${name} ${type}: ${e.message}`)));
      sock.on('message', (msg) => {
        let p: dnsPacket.DecodedPacket;
        try {
          p = dnsPacket.decode(msg);
        } catch {
          return; // not a DNS packet: keep waiting for ours
        }
        const q = p.questions?.[0];
        if (p.id !== id || q === undefined || q.name.toLowerCase() !== name.toLowerCase().replace(/\.$/, '') || q.type !== type) return;
        if (p.flag_tc) return done(new PostsealError('CHECK_DNS', `DNS answer for ${name} ${type} truncated (TCP fallback not implemented)`));
        const code = ((p.flags ?? 0) & 0xf) as keyof typeof RCODES | number;
        const rcode = code in RCODES ? RCODES[code as keyof typeof RCODES] : 'OTHER';
        done(null, { rcode, ad: p.flag_ad, answers: (p.answers ?? []).filter((a) => a.type === type) });
      });
      sock.send(query, this.server.port, this.server.host);
    });
  }

  private async ok(name: string, type: RecordType): Promise<QueryResult> {
    const r = await this.query(name, type);
    if (r.rcode !== 'NOERROR' && r.rcode !== 'NXDOMAIN') throw new PostsealError('CHECK_DNS', `DNS ${name} ${type}: ${r.rcode}`);
    return r;
  }

  async mx(name: string): Promise<{ exists: boolean; records: Array<{ preference: number; exchange: string }> }> {
    const r = await this.ok(name, 'MX');
    const records = r.answers.flatMap((a) => (a.type === 'MX' ? [{ preference: a.data.preference ?? 0, exchange: a.data.exchange.replace(/\.$/, '').toLowerCase() }] : []));
    return { exists: r.rcode === 'NOERROR', records: records.sort((a, b) => a.preference - b.preference) };
  }

  async addresses(name: string): Promise<string[]> {
    const [a, aaaa] = await Promise.all([this.ok(name, 'A'), this.ok(name, 'AAAA')]);
    return [...a.answers, ...aaaa.answers].flatMap((x) => (x.type === 'A' || x.type === 'AAAA' ? [x.data] : []));
  }

  /** TXT records, each joined from its character-strings (RFC 7208 §3.3). */
  async txt(name: string): Promise<string[]> {
    const r = await this.ok(name, 'TXT');
    return r.answers.flatMap((x) => {
      if (x.type !== 'TXT') return [];
      const parts = Array.isArray(x.data) ? x.data : [x.data];
      return [parts.map((p) => (typeof p === 'string' ? p : p.toString('utf8'))).join('')];
    });
  }

  async tlsa(name: string): Promise<{ ad: boolean; records: Tlsa[] }> {
    const r = await this.ok(name, 'TLSA');
    const records = r.answers.flatMap((x) => (x.type === 'TLSA' ? [{ usage: x.data.usage, selector: x.data.selector, matchingType: x.data.matchingType, data: x.data.certificate }] : []));
    return { ad: r.ad, records };
  }

  /** In the shape mailauth's resolver option expects: resolve(name, rrtype) → records. */
  mailauthResolver(): (name: string, type: string) => Promise<unknown> {
    return async (name, type) => {
      if (type === 'TXT') {
        const t = await this.txt(name);
        if (t.length === 0) throw Object.assign(new Error(`no TXT for ${name}`), { code: 'ENOTFOUND' });
        return t.map((s) => [s]);
      }
      if (type === 'MX') return (await this.mx(name)).records;
      if (type === 'A' || type === 'AAAA') return (await this.ok(name, type)).answers.flatMap((x) => (x.type === type ? [x.data] : []));
      throw Object.assign(new Error(`unsupported ${type}`), { code: 'ENOTFOUND' });
    };
  }
}
