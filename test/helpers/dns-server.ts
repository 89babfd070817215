/**
 * A test DNS server on 127.0.0.1:0 (UDP) answering from a table, with dns-packet. Real packets
 * over a real socket: code under test uses its ordinary resolver pointed at this port.
 *
 * Answers: NOERROR with the matching records; NOERROR with no answers when the name exists with
 * other types (NODATA); NXDOMAIN when no record has that name. `ad: true` makes it set the AD bit
 * on every answer, like a validating resolver on a secure path would (RFC 6840 §5.7) — the
 * records are not actually signed; NXDOMAIN carries AD only with `adNxdomain: true` too (a
 * validated denial of existence, RFC 7672 §2.2.1). Names compare case-insensitively, without the trailing dot.
 * `servfail: ['name TYPE']` answers SERVFAIL (rcode 2) to those questions, as a validating
 * resolver does for a DNSSEC-bogus answer or a broken zone.
 * Per question ('name TYPE'), `setAd` sets or clears the AD bit whatever `ad` says, and `setFault`
 * (or `faults`) makes it misbehave: 'servfail'; 'truncate' (UDP answer with TC and no records;
 * the full answer comes over TCP on the same port, RFC 7766); 'lie' (our id, another question);
 * 'drop' (never answers). TCP questions are listed in `tcpQueries`.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';

export type DnsRecord =
  | { name: string; type: 'MX'; preference: number; exchange: string }
  | { name: string; type: 'A'; address: string }
  | { name: string; type: 'AAAA'; address: string }
  | { name: string; type: 'TXT'; data: string | string[] }
  | { name: string; type: 'TLSA'; usage: number; selector: number; matchingType: number; certificate: Buffer };

export type DnsFault = 'servfail' | 'truncate' | 'lie' | 'drop';

export interface DnsServer {
  /** UDP and TCP port (both on 127.0.0.1). */
  port: number;
  /** Every question asked over UDP, as 'name TYPE', in order. */
  queries: string[];
  /** Every question asked over TCP, as 'name TYPE', in order. */
  tcpQueries: string[];
  /** Set (true), clear (false) or stop overriding (null) the AD bit for one question 'name TYPE'. */
  setAd(question: string, ad: boolean | null): void;
  /** Make one question 'name TYPE' misbehave, or behave again (null). */
  setFault(question: string, fault: DnsFault | null): void;
  /** Replace the table (e.g. between test steps). */
  setRecords(records: DnsRecord[]): void;
  close(): Promise<void>;
}

function norm(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function toAnswer(r: DnsRecord): dnsPacket.Answer {
  const base = { name: r.name, ttl: 60, class: 'IN' as const };
  switch (r.type) {
    case 'MX':
      return { ...base, type: 'MX', data: { preference: r.preference, exchange: r.exchange } };
    case 'A':
      return { ...base, type: 'A', data: r.address };
    case 'AAAA':
      return { ...base, type: 'AAAA', data: r.address };
    case 'TXT':
      // One TXT record may hold several character-strings of at most 255 bytes each.
      return { ...base, type: 'TXT', data: Array.isArray(r.data) ? r.data : (r.data.match(/.{1,255}/gs) ?? ['']) };
    case 'TLSA':
      return { ...base, type: 'TLSA', data: { usage: r.usage, selector: r.selector, matchingType: r.matchingType, certificate: r.certificate } };
  }
}

function questionKey(q: string): string {
  const [name = '', type = ''] = q.split(' ');
  return `${norm(name)} ${type.toUpperCase()}`;
}

export async function startDnsServer(
  records: DnsRecord[],
  options: { ad?: boolean; adNxdomain?: boolean; servfail?: string[]; faults?: Record<string, DnsFault> } = {},
): Promise<DnsServer> {
  const faults = new Map<string, DnsFault>();
  for (const q of options.servfail ?? []) faults.set(questionKey(q), 'servfail');
  for (const [q, f] of Object.entries(options.faults ?? {})) faults.set(questionKey(q), f);
  const adOverride = new Map<string, boolean>();
  let table = records;
  const queries: string[] = [];
  const tcpQueries: string[] = [];
  const sock = dgram.createSocket('udp4');
  /** The reply to one query packet, or null for none. */
  const answer = (msg: Buffer, transport: 'udp' | 'tcp'): Buffer | null => {
    let q: dnsPacket.DecodedPacket;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return null;
    }
    const question = q.questions?.[0];
    if (question === undefined) return null;
    const asked = `${norm(question.name)} ${question.type}`;
    (transport === 'udp' ? queries : tcpQueries).push(asked);
    const fault = faults.get(asked);
    if (fault === 'drop') return null;
    if (fault === 'servfail') {
      const flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | 2; // rcode 2 = SERVFAIL
      return dnsPacket.encode({ type: 'response', id: q.id, flags, questions: [question], answers: [] });
    }
    if (fault === 'lie') {
      const other = { ...question, name: `lie.${norm(question.name)}` };
      const rec = table.find((r) => norm(r.name) === norm(question.name) && r.type === question.type);
      return dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: [other], answers: rec ? [{ ...toAnswer(rec), name: other.name }] : [] });
    }
    if (fault === 'truncate' && transport === 'udp') {
      return dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | dnsPacket.TRUNCATED_RESPONSE, questions: [question], answers: [] });
    }
    const sameName = table.filter((r) => norm(r.name) === norm(question.name));
    const answers = sameName.filter((r) => r.type === question.type).map(toAnswer);
    const nxdomain = sameName.length === 0;
    const ad = adOverride.get(asked) ?? (options.ad === true && (!nxdomain || options.adNxdomain === true));
    const flags =
      dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE |
      (ad ? dnsPacket.AUTHENTIC_DATA : 0) |
      (nxdomain ? 3 : 0); // rcode 3 = NXDOMAIN
    return dnsPacket.encode({ type: 'response', id: q.id, flags, questions: [question], answers });
  };
  sock.on('message', (msg, rinfo) => {
    const reply = answer(msg, 'udp');
    if (reply !== null) sock.send(reply, rinfo.port, rinfo.address);
  });
  // DNS over TCP (RFC 7766 §8: two-byte length prefix) on the same port, for truncated answers.
  const conns = new Set<net.Socket>();
  const tcp = net.createServer((c) => {
    conns.add(c);
    c.on('close', () => conns.delete(c));
    c.on('error', () => c.destroy());
    let buf = Buffer.alloc(0);
    c.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        const reply = answer(buf.subarray(2, 2 + len), 'tcp');
        buf = buf.subarray(2 + len);
        if (reply !== null) {
          const framed = Buffer.alloc(2);
          framed.writeUInt16BE(reply.length, 0);
          c.write(Buffer.concat([framed, reply]));
        }
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => {
      sock.off('error', reject);
      resolve();
    });
  });
  // The TCP listener takes the UDP port's number (free for TCP in practice; checked, not assumed).
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(sock.address().port, '127.0.0.1', () => {
      tcp.off('error', reject);
      resolve();
    });
  });
  return {
    port: sock.address().port,
    queries,
    tcpQueries,
    setAd(question, ad) {
      if (ad === null) adOverride.delete(questionKey(question));
      else adOverride.set(questionKey(question), ad);
    },
    setFault(question, fault) {
      if (fault === null) faults.delete(questionKey(question));
      else faults.set(questionKey(question), fault);
    },
    setRecords(r) {
      table = r;
    },
    close: async () => {
      for (const c of conns) c.destroy();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
      await new Promise<void>((resolve) => sock.close(() => resolve()));
    },
  };
}
