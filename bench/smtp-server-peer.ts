/**
 * nodemailer's smtp-server as a discarding peer: STARTTLS with the bench certificate, no AUTH,
 * every message read to the end and dropped. Prints "listening PORT" (bound on 127.0.0.1:0).
 * Usage: node --import tsx bench/smtp-server-peer.ts --cert C --key K
 */
import { readFileSync } from 'node:fs';
import { SMTPServer } from 'smtp-server';

function arg(name: string): string {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (!v) throw new Error(`smtp-server-peer: ${name} is required`);
  return v;
}

const server = new SMTPServer({
  secure: false,
  name: 'bench.localhost',
  key: readFileSync(arg('--key')),
  cert: readFileSync(arg('--cert')),
  disabledCommands: ['AUTH'],
  authOptional: true,
  logger: false,
  size: 35 * 1024 * 1024,
  maxClients: 5000,
  onData(stream, _session, callback) {
    stream.on('data', () => {});
    stream.on('end', () => callback());
  },
});
server.on('error', (e) => process.stderr.write(`smtp-server: ${String(e)}\n`));
server.listen(0, '127.0.0.1', () => {
  const addr = server.server.address();
  process.stdout.write(`listening ${typeof addr === 'object' && addr ? addr.port : 0}\n`);
});
const stop = (): void => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
