/** The TLS facts of a server-side socket, as recorded per session and per message. */
import type { TLSSocket } from 'node:tls';
import type { TlsFacts } from '../types.js';

export function summarizeTlsSocket(socket: TLSSocket): TlsFacts {
  const cipher = socket.getCipher();
  const sni = (socket as TLSSocket & { servername?: string | false }).servername;
  const alpn = socket.alpnProtocol;
  return {
    protocol: socket.getProtocol() ?? 'unknown',
    cipher: cipher.standardName ?? cipher.name,
    group: null,
    sni: typeof sni === 'string' && sni.length > 0 ? sni : null,
    alpn: typeof alpn === 'string' ? alpn : null,
  };
}
