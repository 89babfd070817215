/**
 * Test fixtures for received-mail verification: an RSA key, its DKIM TXT record, and messages
 * signed by an independent signer (Debian's python3-dkim, installed by .ci/run).
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import type { DnsRecord } from '../helpers/dns-server.js';

export const KEY = generateKeyPairSync('rsa', { modulusLength: 2048 });
export const PRIVATE_PEM = KEY.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
const publicB64 = KEY.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');

/** SPF allowing 127.0.0.1, the DKIM key at sel._domainkey.example.org, DMARC p=reject. */
export function records(opts: { spf?: string; dmarc?: string } = {}): DnsRecord[] {
  return [
    { name: 'example.org', type: 'TXT', data: opts.spf ?? 'v=spf1 ip4:127.0.0.1 -all' },
    { name: 'sel._domainkey.example.org', type: 'TXT', data: `v=DKIM1; k=rsa; p=${publicB64}` },
    { name: '_dmarc.example.org', type: 'TXT', data: opts.dmarc ?? 'v=DMARC1; p=reject' },
  ];
}

export function message(opts: { from?: string[]; extra?: string; body?: string } = {}): Buffer {
  const from = (opts.from ?? ['alice@example.org']).map((a) => `From: <${a}>\r\n`).join('');
  return Buffer.from(`${opts.extra ?? ''}${from}To: <bob@postseal.test>\r\nSubject: hello\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.org>\r\n\r\n${opts.body ?? 'Hello Bob.\r\n'}`);
}

/** DKIM-signs msg with Debian's python3-dkim (/usr/bin/python3: the distribution's module), `times` signatures. */
export function pythonSign(msg: Buffer, times = 1): Buffer {
  const script = `
import dkim, sys
msg = sys.stdin.buffer.read()
import os
key = os.environ['DKIM_KEY'].encode()
out = msg
for _ in range(int(sys.argv[1])):
    out = dkim.sign(out, b'sel', b'example.org', key, include_headers=[b'from', b'to', b'subject', b'date', b'message-id']) + out
sys.stdout.buffer.write(out)
`;
  return execFileSync('/usr/bin/python3', ['-c', script, String(times)], { input: msg, env: { ...process.env, DKIM_KEY: PRIVATE_PEM } });
}
