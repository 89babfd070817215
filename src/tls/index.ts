/**
 * Public surface of the TLS layer: policy (options), certificates on disk (certs), the live
 * certificate store (store), session and certificate summaries (summary), generation (generate).
 */
export * from './options.js';
export * from './certs.js';
export * from './store.js';
export * from './sni.js';
export * from './summary.js';
export { createCertificate, splitPemCertificates, KEY_TYPES } from './generate.js';
export type { KeyType, PemKeyPair, CertificateParams } from './generate.js';
