/**
 * Shared fixtures for client tests: one test CA and a good certificate for the fake MX name, a
 * message with a marker that must never reach a server that should not see it, and deliver()
 * options with short timeouts.
 */
import { issueCert, makeTestCa, type PemKeyPair, type TestCa } from '../helpers/certs.js';
import { uniformTimeouts, type DeliverOptions, type TlsLevel } from '../../src/client/index.js';

export const MX_NAME = 'mx.fake.test';
export const MARKER = 'X-Secret-Marker: do-not-leak';
export const MESSAGE = `From: <a@sender.test>\r\nTo: <b@fake.test>\r\nSubject: hello\r\n${MARKER}\r\n\r\nbody line\r\n`;

let pki: Promise<{ ca: TestCa; good: PemKeyPair }> | null = null;

export function testPki(): Promise<{ ca: TestCa; good: PemKeyPair }> {
  pki ??= (async () => {
    const ca = await makeTestCa();
    const good = await issueCert(ca, { names: [MX_NAME] });
    return { ca, good };
  })();
  return pki;
}

export function tlsServerOptions(pair: PemKeyPair): { key: string; cert: string } {
  return { key: pair.keyPem, cert: pair.certPem };
}

export function deliverOptions(port: number, level: TlsLevel, caPem: string, extra: Partial<DeliverOptions> = {}): DeliverOptions {
  return {
    host: '127.0.0.1',
    port,
    serverName: MX_NAME,
    level,
    helo: 'client.sender.test',
    from: 'a@sender.test',
    to: ['b@fake.test'],
    message: MESSAGE,
    tls: { ca: caPem },
    timeouts: uniformTimeouts(5000),
    ...extra,
  };
}

/** Nothing of the transaction, the credentials or the message reached the server. */
export function assertNothingSent(received: string): string | null {
  for (const bad of ['MAIL FROM', 'RCPT TO', 'AUTH', 'DATA', 'BDAT', MARKER]) {
    if (received.toUpperCase().includes(bad.toUpperCase())) return bad;
  }
  return null;
}
