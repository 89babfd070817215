/**
 * Test PKI: a CA, leaves issued by it, self-signed and deliberately broken certificates, and a
 * writer that puts a pair on disk. Real certificates, real signatures (ECDSA P-256 + SHA-256 by
 * default): tests do real handshakes with them, nothing is faked.
 *
 * Invariants: every call makes fresh keys (no shared mutable state between tests); dates are
 * explicit so "expired" and "not yet valid" do not depend on when the test runs.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCertificate, type KeyType, type PemKeyPair } from '../../src/tls/generate.js';

export type { KeyType, PemKeyPair } from '../../src/tls/generate.js';

const DAY = 86_400_000;

/** A test CA. `certPem` is what a client passes as `ca`. */
export type TestCa = PemKeyPair;

export interface IssueOptions {
  /** SAN entries (DNS names or IP literals); the first one is also the CN. */
  names: string[];
  notBefore?: Date;
  notAfter?: Date;
  keyType?: KeyType;
  /** Append the CA certificate after the leaf in `certPem` (a served chain). Default false. */
  includeChain?: boolean;
}

/** A fresh test CA (CN "postseal test CA", valid from yesterday for ten years). */
export async function makeTestCa(options: { keyType?: KeyType; commonName?: string } = {}): Promise<TestCa> {
  const now = Date.now();
  return createCertificate({
    commonName: options.commonName ?? 'postseal test CA',
    names: [],
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 3650 * DAY),
    keyType: options.keyType ?? 'ec',
    isCa: true,
  });
}

/** A leaf for `names`, signed by `ca`. Valid from yesterday for 90 days unless told otherwise. */
export async function issueCert(ca: TestCa, options: IssueOptions): Promise<PemKeyPair> {
  const now = Date.now();
  const pair = await createCertificate({
    commonName: options.names[0] ?? 'localhost',
    names: options.names,
    notBefore: options.notBefore ?? new Date(now - DAY),
    notAfter: options.notAfter ?? new Date(now + 90 * DAY),
    keyType: options.keyType ?? 'ec',
    isCa: false,
    issuer: ca,
  });
  return options.includeChain === true ? { certPem: pair.certPem + ca.certPem, keyPem: pair.keyPem } : pair;
}

/** A self-signed leaf for `names` (valid from yesterday for 90 days). */
export async function selfSigned(names: string[], options: { keyType?: KeyType } = {}): Promise<PemKeyPair> {
  const now = Date.now();
  return createCertificate({
    commonName: names[0] ?? 'localhost',
    names,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 90 * DAY),
    keyType: options.keyType ?? 'ec',
    isCa: false,
  });
}

/** Issued by `ca` for `names`, expired yesterday (valid for 30 days before that). */
export function expiredCert(ca: TestCa, names: string[]): Promise<PemKeyPair> {
  const now = Date.now();
  return issueCert(ca, { names, notBefore: new Date(now - 31 * DAY), notAfter: new Date(now - DAY) });
}

/** Issued by `ca` for `names`, valid only from tomorrow. */
export function notYetValidCert(ca: TestCa, names: string[]): Promise<PemKeyPair> {
  const now = Date.now();
  return issueCert(ca, { names, notBefore: new Date(now + DAY), notAfter: new Date(now + 90 * DAY) });
}

/** Issued by `ca`, valid, but for a name the client will not ask for. */
export function wrongNameCert(ca: TestCa, names: string[] = ['wrong-name.invalid']): Promise<PemKeyPair> {
  return issueCert(ca, { names });
}

export interface KeyPairFiles {
  certFile: string;
  keyFile: string;
}

/** Write `pair` as DIR/{prefix}cert.pem and DIR/{prefix}key.pem (key mode 0600). */
export async function writeKeyPair(dir: string, pair: PemKeyPair, prefix = ''): Promise<KeyPairFiles> {
  await mkdir(dir, { recursive: true });
  const certFile = join(dir, `${prefix}cert.pem`);
  const keyFile = join(dir, `${prefix}key.pem`);
  await writeFile(certFile, pair.certPem);
  await writeFile(keyFile, pair.keyPem, { mode: 0o600 });
  return { certFile, keyFile };
}
