/**
 * Key and certificate generation (self-signed development certificates here, a test PKI in
 * test/helpers/certs.ts). Built on @peculiar/x509 over Node's WebCrypto, because Node itself
 * cannot issue certificates.
 *
 * Invariants: signatures are always SHA-256 (never the SHA-1 some generators default to);
 * keys are ECDSA P-256 unless RSA is asked for; keys leave this module only as PKCS#8 PEM;
 * every name goes into the SAN (RFC 6125 §6.4.4: clients check SAN, CN is a fallback only),
 * IP literals as iPAddress entries (RFC 5280 §4.2.1.6), the rest as dNSName.
 */
import type * as x509 from '@peculiar/x509';
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { PostsealError } from '../errors.js';

let x509Lib: Promise<typeof x509> | null = null;

/**
 * @peculiar/x509 and its reflect-metadata polyfill are loaded on the first certificate made, not
 * when the library is imported: they cost most of postseal's import time, and a server with its
 * own certificates never needs them.
 */
function loadX509(): Promise<typeof x509> {
  x509Lib ??= (async () => {
    await import('reflect-metadata');
    const lib = await import('@peculiar/x509');
    lib.cryptoProvider.set(webcrypto);
    return lib;
  })();
  return x509Lib;
}

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

export const KEY_TYPES = ['ec', 'rsa'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** A certificate and its private key, both PEM. `certPem` may hold a chain, leaf first. */
export interface PemKeyPair {
  certPem: string;
  keyPem: string;
}

export interface CertificateParams {
  /** Subject CN. */
  commonName: string;
  /** SAN entries: DNS names or IP literals. May be empty (e.g. for a CA). */
  names: readonly string[];
  notBefore: Date;
  notAfter: Date;
  keyType: KeyType;
  /** true → basicConstraints CA:TRUE, keyCertSign. */
  isCa: boolean;
  /** Absent → self-signed. */
  issuer?: PemKeyPair;
}

const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const EC_SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const RSA_ALG = {
  name: 'RSASSA-PKCS1-v1_5',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: 'SHA-256',
} as const;
const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

async function generateKeys(keyType: KeyType): Promise<CryptoKeyPair> {
  const alg = keyType === 'ec' ? EC_ALG : RSA_ALG;
  return (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
}

/** Import a PKCS#8 PEM private key for signing; the algorithm follows the key's own type. */
async function importSigningKey(keyPem: string): Promise<{ key: CryptoKey; keyType: KeyType }> {
  const keyObject = createPrivateKey(keyPem);
  const der = keyObject.export({ type: 'pkcs8', format: 'der' });
  const kind = keyObject.asymmetricKeyType;
  if (kind !== 'ec' && kind !== 'rsa') throw new PostsealError('TLS_CERT_INVALID', `unsupported issuer key type ${String(kind)}`);
  const alg = kind === 'ec' ? EC_ALG : RSA_ALG;
  const key = await webcrypto.subtle.importKey('pkcs8', der, alg, false, ['sign']);
  return { key, keyType: kind };
}

function randomSerial(): string {
  const bytes = randomBytes(16);
  // RFC 5280 §4.1.2.2: positive integer, at most 20 octets.
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return bytes.toString('hex');
}

function sanEntries(names: readonly string[]): x509.JsonGeneralName[] {
  return names.map((n) => ({ type: isIP(n) === 0 ? ('dns' as const) : ('ip' as const), value: n }));
}

/** Generate a fresh key and a certificate for it, signed by `issuer` or by itself. */
export async function createCertificate(params: CertificateParams): Promise<PemKeyPair> {
  const lib = await loadX509();
  const keys = await generateKeys(params.keyType);
  const publicKey = keys.publicKey;
  const extensions: x509.Extension[] = [
    new lib.BasicConstraintsExtension(params.isCa, undefined, true),
    await lib.SubjectKeyIdentifierExtension.create(publicKey),
  ];
  if (params.isCa) {
    extensions.push(
      new lib.KeyUsagesExtension(
        lib.KeyUsageFlags.keyCertSign | lib.KeyUsageFlags.cRLSign | lib.KeyUsageFlags.digitalSignature,
        true,
      ),
    );
  } else {
    // RSA key exchange is gone from our suites, but older peers still expect keyEncipherment.
    const usage =
      params.keyType === 'rsa'
        ? lib.KeyUsageFlags.digitalSignature | lib.KeyUsageFlags.keyEncipherment
        : lib.KeyUsageFlags.digitalSignature;
    extensions.push(new lib.KeyUsagesExtension(usage, true));
    extensions.push(new lib.ExtendedKeyUsageExtension([OID_SERVER_AUTH, OID_CLIENT_AUTH]));
  }
  if (params.names.length > 0) {
    extensions.push(new lib.SubjectAlternativeNameExtension(sanEntries(params.names)));
  }
  const subject: x509.JsonName = [{ CN: [params.commonName] }];

  let signingKey: CryptoKey = keys.privateKey;
  let signerType: KeyType = params.keyType;
  let issuerName: x509.JsonName | string = subject;
  if (params.issuer !== undefined) {
    const imported = await importSigningKey(params.issuer.keyPem);
    signingKey = imported.key;
    signerType = imported.keyType;
    const issuerCert = new lib.X509Certificate(firstPem(params.issuer.certPem));
    issuerName = issuerCert.subject;
    extensions.push(await lib.AuthorityKeyIdentifierExtension.create(issuerCert.publicKey));
  } else {
    extensions.push(await lib.AuthorityKeyIdentifierExtension.create(publicKey));
  }
  const cert = await lib.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject,
    issuer: issuerName,
    notBefore: params.notBefore,
    notAfter: params.notAfter,
    publicKey,
    signingKey,
    // SHA-256 either way: OpenSSL 3 at its default security level rejects SHA-1 signatures.
    signingAlgorithm: signerType === 'ec' ? EC_SIGN : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
    extensions,
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.toString('pem') + '\n', keyPem: toPem(pkcs8, 'PRIVATE KEY') };
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every CERTIFICATE block of a PEM text, in order. */
export function splitPemCertificates(pem: string): string[] {
  return pem.match(PEM_CERT) ?? [];
}

function firstPem(pem: string): string {
  const first = splitPemCertificates(pem)[0];
  if (first === undefined) throw new PostsealError('TLS_CERT_INVALID', 'no CERTIFICATE block in issuer PEM');
  return first;
}
