/**
 * Certificates on disk: load and validate a key pair, make a self-signed one for development.
 *
 * Invariants:
 * - A loaded pair has been proven usable: every PEM block parses, the key matches the leaf, and
 *   OpenSSL accepted both in a SecureContext built with the server policy (options.ts).
 * - Errors are PostsealError('TLS_CERT_INVALID') and name the file at fault.
 * - The self-signed key is written with mode 0600, atomically (temp file + rename), and is
 *   generated only when no usable pair for this hostname exists.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { PostsealError } from '../errors.js';
import { createCertificate, splitPemCertificates } from './generate.js';
import { serverContextOptions, type ServerTlsPolicyOptions } from './options.js';
import { summarizeCertificate, type CertificateSummary } from './summary.js';

/** A validated certificate/key pair and the SecureContext built from it. */
export interface LoadedKeyPair {
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
  context: tls.SecureContext;
  /** Leaf first, then the rest of the chain as found in the cert file. */
  chain: CertificateSummary[];
  leaf: CertificateSummary;
}

function invalid(message: string, cause?: unknown): PostsealError {
  return new PostsealError('TLS_CERT_INVALID', message, cause === undefined ? undefined : { cause });
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw invalid(`cannot read TLS ${what} file ${file}: ${reason(err)}`, err);
  }
}

/**
 * Validate PEM texts (already read) as a server key pair. File names are only for messages.
 * Synchronous on purpose: used both by loadKeyPair and by the reload path.
 */
export function validateKeyPair(
  certPem: string,
  keyPem: string,
  files: { certFile: string; keyFile: string },
  policy: ServerTlsPolicyOptions = {},
): LoadedKeyPair {
  const { certFile, keyFile } = files;
  const blocks = splitPemCertificates(certPem);
  if (blocks.length === 0) throw invalid(`TLS certificate file ${certFile} contains no PEM CERTIFICATE block`);
  const certs: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      certs.push(new X509Certificate(block));
    } catch (err) {
      throw invalid(`TLS certificate file ${certFile}: certificate #${i + 1} does not parse: ${reason(err)}`, err);
    }
  }
  const leafCert = certs[0];
  if (leafCert === undefined) throw invalid(`TLS certificate file ${certFile} contains no certificate`);
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw invalid(`TLS key file ${keyFile} does not hold a usable private key: ${reason(err)}`, err);
  }
  if (!leafCert.checkPrivateKey(key)) {
    throw invalid(`TLS key file ${keyFile} does not match the first certificate in ${certFile}`);
  }
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ ...serverContextOptions(policy), cert: certPem, key: keyPem });
  } catch (err) {
    throw invalid(`TLS certificate ${certFile} with key ${keyFile} rejected by OpenSSL: ${reason(err)}`, err);
  }
  const chain = certs.map((c) => summarizeCertificate(c));
  const leaf = chain[0];
  if (leaf === undefined) throw invalid(`TLS certificate file ${certFile} contains no certificate`);
  return { certFile, keyFile, certPem, keyPem, context, chain, leaf };
}

/** Read a pair's PEM texts; PostsealError('TLS_CERT_INVALID') naming the unreadable file. */
export async function readKeyPairFiles(certFile: string, keyFile: string): Promise<{ certPem: string; keyPem: string }> {
  const certPem = await readText(certFile, 'certificate');
  const keyPem = await readText(keyFile, 'key');
  return { certPem, keyPem };
}

/** Read and validate a PEM certificate (chain allowed, leaf first) and its private key. */
export async function loadKeyPair(
  certFile: string,
  keyFile: string,
  policy: ServerTlsPolicyOptions = {},
): Promise<LoadedKeyPair> {
  const { certPem, keyPem } = await readKeyPairFiles(certFile, keyFile);
  return validateKeyPair(certPem, keyPem, { certFile, keyFile }, policy);
}

export interface SelfSignedResult {
  certFile: string;
  keyFile: string;
  /** true when this call generated a new pair (the caller should log a warning). */
  created: boolean;
}

/** Does this certificate name `hostname` in its SAN (IP literal → iPAddress entry)? */
export function certificateNames(cert: X509Certificate, hostname: string): boolean {
  // RFC 6125 §6.4.4: match against SAN; subject: 'never' ignores the CN.
  return isIP(hostname) === 0
    ? cert.checkHost(hostname, { subject: 'never', wildcards: false }) !== undefined
    : cert.checkIP(hostname) !== undefined;
}

const SELF_SIGNED_DAYS = 365;

/**
 * Make sure DATA/tls/selfsigned-{cert,key}.pem hold a usable self-signed pair for `hostname`.
 * Reused when present, parseable, matching each other, naming `hostname` and not expired;
 * otherwise an ECDSA P-256 key and SHA-256 certificate are generated (valid one year).
 */
export async function ensureSelfSigned(dataDir: string, hostname: string): Promise<SelfSignedResult> {
  const dir = join(dataDir, 'tls');
  const certFile = join(dir, 'selfsigned-cert.pem');
  const keyFile = join(dir, 'selfsigned-key.pem');
  if (await reusable(certFile, keyFile, hostname)) return { certFile, keyFile, created: false };

  await mkdir(dir, { recursive: true, mode: 0o700 });
  const now = Date.now();
  const pair = await createCertificate({
    commonName: hostname,
    names: [hostname],
    // A little slack for clocks behind ours.
    notBefore: new Date(now - 5 * 60_000),
    notAfter: new Date(now + SELF_SIGNED_DAYS * 86_400_000),
    keyType: 'ec',
    isCa: false,
  });
  await writeAtomic(keyFile, pair.keyPem, 0o600);
  await writeAtomic(certFile, pair.certPem, 0o644);
  return { certFile, keyFile, created: true };
}

async function reusable(certFile: string, keyFile: string, hostname: string): Promise<boolean> {
  try {
    const pair = await loadKeyPair(certFile, keyFile);
    const leaf = new X509Certificate(pair.certPem);
    const notAfter = new Date(leaf.validTo).getTime();
    return certificateNames(leaf, hostname) && notAfter > Date.now();
  } catch {
    return false; // missing or unusable: regenerate
  }
}

/** Write via a temp file and rename, so a watcher or a crash never sees half a file. */
export async function writeAtomic(file: string, text: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, text, { mode });
  await chmod(tmp, mode); // the umask may have narrowed or the file pre-existed
  await rename(tmp, file);
}
