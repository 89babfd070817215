/**
 * The bench certificate: one self-signed leaf for bench.localhost / 127.0.0.1, made with the
 * openssl CLI so every peer (Node, Postfix, Python) loads the same PEM files. ECDSA P-256 by
 * default (the targets are stated for it); RSA-2048 with --cert-type rsa.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export type CertType = 'ec' | 'rsa';

export function makeBenchCert(dir: string, type: CertType): { certFile: string; keyFile: string } {
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const keyArgs = type === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048'];
  execFileSync(
    'openssl',
    ['req', '-x509', ...keyArgs, '-sha256', '-nodes', '-days', '2', '-subj', '/CN=bench.localhost', '-addext', 'subjectAltName=DNS:bench.localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { certFile, keyFile };
}
