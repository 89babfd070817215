/**
 * The floor: the least SMTP a Node server can speak to bench/loadgen.ts over STARTTLS. No
 * validation, no limits, no timeouts, no logging — canned replies keyed on the first letter of a
 * line, DATA ended by the first "\r\n.\r\n". It is NOT a mail server; it answers "what does Node's
 * net + TLS machinery alone cost for this conversation", so postseal's own share is the rest.
 *
 * Usage: node bench/micro-floor-peer.ts --cert C --key K [--tickets]   (prints "listening PORT")
 */
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';

function arg(name: string): string {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (!v) throw new Error(`micro-floor-peer: ${name} is required`);
  return v;
}

const secureContext = tls.createSecureContext({ cert: readFileSync(arg('--cert')), key: readFileSync(arg('--key')), minVersion: 'TLSv1.2' });
const EHLO = '250-bench.localhost\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 HELP\r\n';

function serve(sock: net.Socket | tls.TLSSocket, secure: boolean): void {
  let buf = '';
  let inData = false;
  const onData = (d: Buffer): void => {
    buf += d.toString('latin1');
    let out = '';
    for (;;) {
      if (inData) {
        const e = buf.indexOf('\r\n.\r\n');
        if (e < 0) {
          if (buf.length > 8) buf = buf.slice(buf.length - 4);
          break;
        }
        buf = buf.slice(e + 5);
        inData = false;
        out += '250 2.0.0 OK: queued\r\n';
        continue;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) break;
      const c = buf.charCodeAt(0) | 0x20;
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (c === 0x65 /* e */) out += EHLO;
      else if (c === 0x6d /* m */ || c === 0x72 /* r */) out += '250 2.1.0 OK\r\n';
      else if (c === 0x64 /* d */) {
        out += '354 go\r\n';
        inData = true;
        buf = '\r\n' + buf;
      } else if (c === 0x71 /* q */) {
        sock.end(out + '221 bye\r\n');
        return;
      } else if (c === 0x73 /* s */ && !secure && line.startsWith('STARTTLS')) {
        sock.off('data', onData);
        sock.write('220 go\r\n');
        const t = new tls.TLSSocket(sock as net.Socket, { isServer: true, secureContext });
        t.on('error', () => t.destroy());
        t.once('secure', () => serve(t, true));
        return;
      } else out += '250 OK\r\n';
    }
    if (out) sock.write(out);
  };
  sock.on('data', onData);
}

const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  sock.on('error', () => sock.destroy());
  sock.write('220 bench.localhost ESMTP floor\r\n');
  serve(sock, false);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${(server.address() as net.AddressInfo).port}\n`));
process.on('SIGTERM', () => process.exit(0));
