/**
 * Deliberately broken SMTP servers for the checker's tests: a tiny raw net/tls server whose flaws
 * are switched on one by one. It speaks just enough SMTP for the probes (EHLO, MAIL, RCPT, NOOP,
 * RSET, QUIT, STARTTLS) and does a real TLS handshake with a real certificate.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { PemKeyPair } from '../helpers/certs.js';

export interface Flaws {
  /** Keep the bytes pipelined after STARTTLS and execute them inside TLS (CVE-2011-0411 class). */
  executePipelined?: boolean;
  /** Keep MAIL FROM across STARTTLS (RFC 3207 §4.2 violation). */
  keepMail?: boolean;
  /** Send these bytes in the same segment as the 220 to STARTTLS. */
  extraAfter220?: string;
  /** Leave STARTTLS out of EHLO (but still accept the command). */
  stripStarttls?: boolean;
  /** Offer AUTH PLAIN LOGIN in plaintext EHLO. */
  authBeforeTls?: boolean;
  /** Answer 250 to any line, unknown verbs included (a server that cannot say no). */
  answerAnything?: boolean;
  /** Answer a second STARTTLS inside TLS with 220 (RFC 3207 §4.2 violation; aiosmtpd does this). */
  starttlsAgain?: boolean;
  /** Accept `STARTTLS x` (RFC 3207 §4: 501 expected for any argument). */
  starttlsArgument?: boolean;
  /** Answer MAIL with 530 until TLS (submission-style policy): the state probe cannot run. */
  mailNeedsTls?: boolean;
  /** TLS from the first byte (implicit TLS) on this port, greeting inside TLS. */
  implicitTls?: boolean;
}

export interface BrokenServer {
  port: number;
  close(): Promise<void>;
}

export async function startBrokenServer(pair: PemKeyPair, flaws: Flaws): Promise<BrokenServer> {
  const ctx = tls.createSecureContext({ cert: pair.certPem, key: pair.keyPem });
  const sockets = new Set<net.Socket>();
  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    raw.on('error', () => raw.destroy());
    let sock: net.Socket = raw;
    let buf = '';
    let inTls = false;
    let mail = false;
    const write = (s: string): void => void sock.write(s);
    const onData = (d: Buffer): void => {
      buf += d.toString('latin1');
      pump();
    };
    const pump = (): void => {
      for (;;) {
        const i = buf.indexOf('\n');
        if (i < 0) return;
        const line = buf.slice(0, i).replace(/\r$/, '');
        buf = buf.slice(i + 1);
        if (handle(line) === 'upgraded') return;
      }
    };
    const handle = (line: string): 'upgraded' | void => {
      const verb = line.split(' ')[0]?.toUpperCase() ?? '';
      switch (verb) {
        case 'EHLO': {
          if (!flaws.keepMail || !inTls) mail = flaws.keepMail === true ? mail : false;
          const caps = ['PIPELINING'];
          if (!inTls && !flaws.stripStarttls) caps.push('STARTTLS');
          if (inTls || flaws.authBeforeTls) caps.push('AUTH PLAIN LOGIN');
          write(['broken.test', ...caps].map((c, k, a) => `250${k === a.length - 1 ? ' ' : '-'}${c}\r\n`).join(''));
          return;
        }
        case 'MAIL':
          if (flaws.mailNeedsTls && !inTls) return write('530 5.7.0 Must issue a STARTTLS command first\r\n');
          mail = true;
          return write('250 ok\r\n');
        case 'RCPT':
          return write(mail ? '250 ok\r\n' : '503 need MAIL\r\n');
        case 'NOOP':
          return write('250 noop ok\r\n');
        case 'RSET':
          mail = false;
          return write('250 ok\r\n');
        case 'QUIT':
          write('221 bye\r\n');
          sock.end();
          return;
        case 'STARTTLS': {
          if (inTls) return write(flaws.starttlsAgain ? '220 go ahead again\r\n' : '503 already\r\n');
          if (line.length > 'STARTTLS'.length && !flaws.starttlsArgument) return write('501 no arguments\r\n');
          raw.write('220 go ahead\r\n' + (flaws.extraAfter220 ?? ''));
          const leftover = flaws.executePipelined ? buf : '';
          buf = '';
          raw.off('data', onData);
          const t = new tls.TLSSocket(raw, { isServer: true, secureContext: ctx });
          t.on('error', () => raw.destroy());
          t.once('secure', () => {
            sock = t;
            inTls = true;
            if (!flaws.keepMail) mail = false;
            t.on('data', onData);
            buf = leftover;
            pump();
          });
          return 'upgraded';
        }
        default:
          return write(flaws.answerAnything ? '250 ok\r\n' : '500 unknown\r\n');
      }
    };
    if (flaws.implicitTls) {
      const t = new tls.TLSSocket(raw, { isServer: true, secureContext: ctx });
      t.on('error', () => raw.destroy());
      t.once('secure', () => {
        sock = t;
        inTls = true;
        t.on('data', onData);
        write('220 broken.test ESMTP (implicit TLS)\r\n');
      });
      return;
    }
    raw.on('data', onData);
    write('220 broken.test ESMTP\r\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return {
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
