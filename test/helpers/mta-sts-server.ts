/**
 * A test MTA-STS policy host (RFC 8461 §3.3): HTTPS on 127.0.0.1:0 with a certificate from a test
 * CA naming mta-sts.DOMAIN for each domain given, serving /.well-known/mta-sts.txt per Host header.
 * Code under test connects here through its endpoint override (Host and SNI stay mta-sts.DOMAIN)
 * and trusts `ca`.
 *
 * Each domain's response is set with `set(domain, response)`: a body (string or bytes) with status
 * and Content-Type (default 200, text/plain), extra headers (a Location for a redirect), or
 * `stall: true` (headers and the first bytes, then nothing: a slow server). Unknown hosts get 404.
 * `requests` lists the Host of every request, in order.
 */
import https from 'node:https';
import type { Socket } from 'node:net';
import { issueCert, makeTestCa, type PemKeyPair, type TestCa } from './certs.js';

export interface PolicyResponse {
  body?: string | Buffer;
  status?: number;
  contentType?: string;
  headers?: Record<string, string>;
  /** Send the headers and the first bytes of the body, then never finish. */
  stall?: boolean;
}

export interface MtaStsServer {
  port: number;
  endpoint: { host: string; port: number };
  /** The test CA's certificate (PEM): what the client passes as `ca`. */
  ca: string;
  requests: string[];
  set(domain: string, response: PolicyResponse | null): void;
  close(): Promise<void>;
}

/** A valid policy body (LF lines). */
export function policyText(mode: 'enforce' | 'testing' | 'none', mx: string[], maxAge = 86400): string {
  return ['version: STSv1', `mode: ${mode}`, ...mx.map((m) => `mx: ${m}`), `max_age: ${maxAge}`, ''].join('\n');
}

export async function startMtaStsServer(domains: string[], opts: { ca?: TestCa; cert?: PemKeyPair } = {}): Promise<MtaStsServer> {
  const ca = opts.ca ?? (await makeTestCa());
  const cert = opts.cert ?? (await issueCert(ca, { names: domains.map((d) => `mta-sts.${d}`) }));
  const responses = new Map<string, PolicyResponse>();
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    const host = String(req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '');
    requests.push(host);
    const r = host.startsWith('mta-sts.') && req.url === '/.well-known/mta-sts.txt' ? responses.get(host.slice('mta-sts.'.length)) : undefined;
    if (r === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    const body = typeof r.body === 'string' ? Buffer.from(r.body, 'utf8') : (r.body ?? Buffer.alloc(0));
    res.writeHead(r.status ?? 200, { 'content-type': r.contentType ?? 'text/plain', ...(r.headers ?? {}) });
    if (r.stall === true) {
      res.write(body.subarray(0, Math.min(10, body.length)));
      return; // never ends: the client's deadline must
    }
    res.end(body);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port,
    endpoint: { host: '127.0.0.1', port },
    ca: ca.certPem,
    requests,
    set(domain, response) {
      const d = domain.toLowerCase();
      if (response === null) responses.delete(d);
      else responses.set(d, response);
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
