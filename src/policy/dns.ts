/**
 * The one DNS client of postseal (policy lookups, the checker): MX, A/AAAA, TXT and TLSA over UDP
 * with dns-packet, falling back to TCP when the answer is truncated, because Node 20 has neither
 * dns.resolveTlsa nor the DNSSEC AD bit.
 *
 * Invariants:
 * - Every exchange has a deadline (timeoutMs, UDP and TCP alike); a query makes at most
 *   `attempts` exchanges, rotating over the configured servers; nothing waits longer than
 *   attempts × (UDP + TCP) × timeoutMs.
 * - A UDP reply is taken only from the server asked (connected socket) and with our id; a reply
 *   with our id whose question is not ours (one question, same name, type and class) is an error
 *   (DNS_BAD_ANSWER), never an answer. Over TCP the id must match too.
 * - Answers are bounded: a UDP datagram above UDP_MAX bytes or a TCP message above
 *   maxAnswerBytes is refused; only records of the asked type owned by the question name (or by
 *   a CNAME target the answer itself names) are returned.
 * - The AD bit is reported as the resolver gave it. We do not validate DNSSEC: "validated" means
 *   "the resolver said so", so AD counts only from a resolver the operator trusts (RFC 6840 §5.7,
 *   RFC 7672 §2.2).
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import dnsPacket from 'dns-packet';
import { PostsealError } from '../errors.js';
import type { TlsaRecord } from './types.js';

export type RecordType = 'MX' | 'A' | 'AAAA' | 'TXT' | 'TLSA';

export interface DnsServerAddress {
  host: string;
  port: number;
}

export interface QueryResult {
  rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED' | 'OTHER';
  /** The resolver set the AD bit (DNSSEC validated by the resolver). */
  ad: boolean;
  /** Records of the asked type for the question name (or a CNAME target named in the answer). */
  answers: dnsPacket.Answer[];
  /** The answer came over TCP (the UDP one was truncated, RFC 7766 §5). */
  tcp: boolean;
}

export interface DnsResolverOptions {
  /** Exchanges per query (default 2), rotating over the servers. */
  attempts?: number;
  /** Largest TCP answer accepted (default 65535, the most a TCP DNS message can be). */
  maxAnswerBytes?: number;
}

/** What we advertise in EDNS (the DNS flag day 2020 size), and the most a UDP reply may be. */
const EDNS_PAYLOAD = 1232;
const UDP_MAX = 4096;
const RCODES = { 0: 'NOERROR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 5: 'REFUSED' } as const;

function norm(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function rcodeOf(flags: number | undefined): QueryResult['rcode'] {
  const code = (flags ?? 0) & 0xf;
  return code in RCODES ? RCODES[code as keyof typeof RCODES] : 'OTHER';
}

/** The reply must answer exactly our question, or the resolver is lying (or broken). */
function checkQuestion(p: dnsPacket.DecodedPacket, name: string, type: RecordType): void {
  const qs = p.questions ?? [];
  const q = qs[0];
  if (qs.length !== 1 || q === undefined || norm(q.name) !== norm(name) || q.type !== type || (q.class !== undefined && q.class !== 'IN')) {
    const got = q === undefined ? 'no question' : `${q.name} ${q.type}`;
    throw new PostsealError('DNS_BAD_ANSWER', `DNS reply for ${name} ${type} answers another question (${got}, ${qs.length} question(s))`);
  }
  if (p.type !== 'response') throw new PostsealError('DNS_BAD_ANSWER', `DNS reply for ${name} ${type} is not a response`);
}

/** Records of the asked type owned by the question name, following CNAMEs the answer names. */
function relevant(p: dnsPacket.DecodedPacket, name: string, type: RecordType): dnsPacket.Answer[] {
  const answers = p.answers ?? [];
  const owners = new Set([norm(name)]);
  for (let i = 0; i < 8; i++) {
    const before = owners.size;
    for (const a of answers) if (a.type === 'CNAME' && owners.has(norm(a.name))) owners.add(norm(a.data));
    if (owners.size === before) break;
  }
  return answers.filter((a) => a.type === type && owners.has(norm(a.name)));
}

export class DnsResolver {
  readonly servers: readonly DnsServerAddress[];
  private readonly attempts: number;
  private readonly maxAnswerBytes: number;
  private next = 0;

  constructor(
    servers: DnsServerAddress | readonly DnsServerAddress[],
    readonly timeoutMs = 5000,
    opts: DnsResolverOptions = {},
  ) {
    this.servers = Array.isArray(servers) ? [...(servers as readonly DnsServerAddress[])] : [servers as DnsServerAddress];
    if (this.servers.length === 0) throw new PostsealError('DNS_FAILED', 'no DNS server given');
    this.attempts = Math.max(1, opts.attempts ?? 2);
    this.maxAnswerBytes = Math.min(65535, Math.max(512, opts.maxAnswerBytes ?? 65535));
  }

  /** The system resolvers, as node:dns knows them (the first one is asked first). */
  static system(timeoutMs?: number): DnsResolver {
    const servers = dns.getServers().map((s) => {
      const m = /^\[(.+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
      return m ? { host: m[1] ?? '', port: Number(m[2]) } : { host: s, port: 53 };
    });
    if (servers.length === 0) throw new PostsealError('DNS_FAILED', 'no system DNS resolver configured');
    return new DnsResolver(servers, timeoutMs);
  }

  /** The first server (the checker prints it). */
  get server(): DnsServerAddress {
    return this.servers[0] ?? { host: '', port: 0 };
  }

  async query(name: string, type: RecordType): Promise<QueryResult> {
    let last: unknown = null;
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      const server = this.servers[this.next++ % this.servers.length] ?? this.server;
      try {
        const udp = await this.udp(server, name, type);
        if (udp !== 'truncated') return udp;
        // RFC 7766 §5 (RFC 1035 §4.2.2): a truncated UDP answer is asked again over TCP.
        return await this.tcp(server, name, type);
      } catch (e) {
        last = e;
      }
    }
    throw last instanceof Error ? last : new PostsealError('DNS_FAILED', String(last));
  }

  private encode(name: string, type: RecordType, id: number): Buffer {
    return dnsPacket.encode({
      type: 'query',
      id,
      // RFC 6840 §5.7: ask for the AD bit; DO makes validating resolvers include DNSSEC data.
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.AUTHENTIC_DATA,
      questions: [{ type, name, class: 'IN' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: EDNS_PAYLOAD, flags: dnsPacket.DNSSEC_OK } as dnsPacket.Answer],
    });
  }

  private result(p: dnsPacket.DecodedPacket, name: string, type: RecordType, tcp: boolean): QueryResult {
    return { rcode: rcodeOf(p.flags), ad: p.flag_ad, answers: relevant(p, name, type), tcp };
  }

  private udp(server: DnsServerAddress, name: string, type: RecordType): Promise<QueryResult | 'truncated'> {
    const id = randomInt(0, 65536);
    const query = this.encode(name, type, id);
    const sock = dgram.createSocket(net.isIPv6(server.host) ? 'udp6' : 'udp4');
    return new Promise((resolve, reject) => {
      let settled = false;
      const done = (err: Error | null, r?: QueryResult | 'truncated'): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sock.close();
        if (err) reject(err);
        else if (r !== undefined) resolve(r);
      };
      const timer = setTimeout(() => done(new PostsealError('DNS_TIMEOUT', `no DNS answer for ${name} ${type} from ${server.host}:${server.port} within ${this.timeoutMs} ms`)), this.timeoutMs);
      sock.on('error', (e) => done(new PostsealError('DNS_FAILED', `DNS query ${name} ${type}: ${e.message}`)));
      sock.on('message', (msg) => {
        if (msg.length > UDP_MAX) return done(new PostsealError('DNS_BAD_ANSWER', `DNS reply for ${name} ${type} is ${msg.length} bytes over UDP (we allow ${UDP_MAX})`));
        let p: dnsPacket.DecodedPacket;
        try {
          p = dnsPacket.decode(msg);
        } catch {
          return; // not a DNS packet: keep waiting for ours
        }
        if (p.id !== id) return; // a stale or off-path packet: keep waiting for ours
        try {
          checkQuestion(p, name, type);
        } catch (e) {
          return done(e instanceof Error ? e : new Error(String(e)));
        }
        if (p.flag_tc) return done(null, 'truncated');
        done(null, this.result(p, name, type, false));
      });
      // A connected socket receives only from the server asked (RFC 5452 §4.4 in spirit).
      sock.connect(server.port, server.host, () => {
        sock.send(query, (e) => {
          if (e) done(new PostsealError('DNS_FAILED', `DNS query ${name} ${type}: ${e.message}`));
        });
      });
    });
  }

  private tcp(server: DnsServerAddress, name: string, type: RecordType): Promise<QueryResult> {
    const id = randomInt(0, 65536);
    const query = this.encode(name, type, id);
    const framed = Buffer.alloc(2 + query.length);
    framed.writeUInt16BE(query.length, 0);
    query.copy(framed, 2);
    return new Promise((resolve, reject) => {
      let settled = false;
      const sock = net.connect({ host: server.host, port: server.port });
      const done = (err: Error | null, r?: QueryResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err);
        else if (r !== undefined) resolve(r);
      };
      const timer = setTimeout(() => done(new PostsealError('DNS_TIMEOUT', `no DNS answer over TCP for ${name} ${type} from ${server.host}:${server.port} within ${this.timeoutMs} ms`)), this.timeoutMs);
      let buf = Buffer.alloc(0);
      sock.on('connect', () => sock.write(framed));
      sock.on('error', (e) => done(new PostsealError('DNS_FAILED', `DNS over TCP ${name} ${type}: ${e.message}`)));
      sock.on('end', () => done(new PostsealError('DNS_FAILED', `DNS over TCP ${name} ${type}: closed before a full answer`)));
      sock.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length < 2) return;
        const len = buf.readUInt16BE(0);
        if (len > this.maxAnswerBytes) return done(new PostsealError('DNS_BAD_ANSWER', `DNS answer for ${name} ${type} is ${len} bytes (we allow ${this.maxAnswerBytes})`));
        if (buf.length < 2 + len) return;
        let p: dnsPacket.DecodedPacket;
        try {
          p = dnsPacket.decode(buf.subarray(2, 2 + len));
        } catch (e) {
          return done(new PostsealError('DNS_BAD_ANSWER', `DNS answer over TCP for ${name} ${type} does not decode: ${e instanceof Error ? e.message : String(e)}`));
        }
        if (p.id !== id) return done(new PostsealError('DNS_BAD_ANSWER', `DNS answer over TCP for ${name} ${type} has another id`));
        try {
          checkQuestion(p, name, type);
        } catch (e) {
          return done(e instanceof Error ? e : new Error(String(e)));
        }
        done(null, this.result(p, name, type, true));
      });
    });
  }

  private async ok(name: string, type: RecordType): Promise<QueryResult> {
    const r = await this.query(name, type);
    if (r.rcode !== 'NOERROR' && r.rcode !== 'NXDOMAIN') throw new PostsealError('DNS_FAILED', `DNS ${name} ${type}: ${r.rcode}`);
    return r;
  }

  async mx(name: string): Promise<{ exists: boolean; ad: boolean; records: Array<{ preference: number; exchange: string }> }> {
    const r = await this.ok(name, 'MX');
    const records = r.answers.flatMap((a) => (a.type === 'MX' ? [{ preference: a.data.preference ?? 0, exchange: norm(a.data.exchange) }] : []));
    return { exists: r.rcode === 'NOERROR', ad: r.ad, records: records.sort((a, b) => a.preference - b.preference) };
  }

  async addresses(name: string): Promise<string[]> {
    const [a, aaaa] = await Promise.all([this.ok(name, 'A'), this.ok(name, 'AAAA')]);
    return [...a.answers, ...aaaa.answers].flatMap((x) => (x.type === 'A' || x.type === 'AAAA' ? [x.data] : []));
  }

  /** TXT records, each joined from its character-strings (RFC 7208 §3.3, RFC 8461 §3.1). */
  async txt(name: string): Promise<string[]> {
    const r = await this.ok(name, 'TXT');
    return r.answers.flatMap((x) => {
      if (x.type !== 'TXT') return [];
      const parts = Array.isArray(x.data) ? x.data : [x.data];
      return [parts.map((p) => (typeof p === 'string' ? p : p.toString('utf8'))).join('')];
    });
  }

  async tlsa(name: string): Promise<{ ad: boolean; records: TlsaRecord[] }> {
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
