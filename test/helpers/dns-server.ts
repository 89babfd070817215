/**
 * A test DNS server on 127.0.0.1:0 (UDP) answering from a table, with dns-packet. Real packets
 * over a real socket: code under test uses its ordinary resolver pointed at this port.
 *
 * Answers: NOERROR with the matching records; NOERROR with no answers when the name exists with
 * other types (NODATA); NXDOMAIN when no record has that name. `ad: true` makes it set the AD bit
 * on every answer, like a validating resolver on a secure path would (RFC 6840 §5.7) — the
 * records are not actually signed. Names compare case-insensitively, without the trailing dot.
 * `servfail: ['name TYPE']` answers SERVFAIL (rcode 2) to those questions, as a validating
 * resolver does for a DNSSEC-bogus answer or a broken zone.
 */
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';

export type DnsRecord =
  | { name: string; type: 'MX'; preference: number; exchange: string }
  | { name: string; type: 'A'; address: string }
  | { name: string; type: 'AAAA'; address: string }
  | { name: string; type: 'TXT'; data: string | string[] }
  | { name: string; type: 'TLSA'; usage: number; selector: number; matchingType: number; certificate: Buffer };

export interface DnsServer {
  port: number;
  /** Every question asked, as 'name TYPE', in order. */
  queries: string[];
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

export async function startDnsServer(records: DnsRecord[], options: { ad?: boolean; servfail?: string[] } = {}): Promise<DnsServer> {
  const servfail = new Set((options.servfail ?? []).map((q) => {
    const [name = '', type = ''] = q.split(' ');
    return `${norm(name)} ${type.toUpperCase()}`;
  }));
  let table = records;
  const queries: string[] = [];
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    let q: dnsPacket.DecodedPacket;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    if (question === undefined) return;
    const asked = `${norm(question.name)} ${question.type}`;
    queries.push(asked);
    if (servfail.has(asked)) {
      const flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | 2; // rcode 2 = SERVFAIL
      sock.send(dnsPacket.encode({ type: 'response', id: q.id, flags, questions: [question], answers: [] }), rinfo.port, rinfo.address);
      return;
    }
    const sameName = table.filter((r) => norm(r.name) === norm(question.name));
    const answers = sameName.filter((r) => r.type === question.type).map(toAnswer);
    const nxdomain = sameName.length === 0;
    const flags =
      dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE |
      (options.ad === true && !nxdomain ? dnsPacket.AUTHENTIC_DATA : 0) |
      (nxdomain ? 3 : 0); // rcode 3 = NXDOMAIN
    const reply = dnsPacket.encode({ type: 'response', id: q.id, flags, questions: [question], answers });
    sock.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => {
      sock.off('error', reject);
      resolve();
    });
  });
  return {
    port: sock.address().port,
    queries,
    setRecords(r) {
      table = r;
    },
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}
