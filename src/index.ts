/**
 * postseal as a library: everything the CLI does is one of these calls.
 * `import { startServe, SmtpServer, SmtpClient, deliver, checkHost } from 'postseal'`.
 */
export { startServe, type RunningServer, type ServeOverrides } from './serve.js';
export { defaultConfig, loadConfigFile, applyConfigObject, DEFAULT_LIMITS, DEFAULT_RELAY, type ServeConfig, type RelaySettings } from './config.js';
export { parseHostPort, type HostPort } from './protocol/host-port.js';
export { SmtpServer, type BoundListener } from './server/server.js';
export type { ServerOptions, ListenerOptions, Limits, MessageSink, UserVerifier, TlsProvider, Logger } from './server/types.js';
export * from './client/index.js';
export { QueueRunner, type RelayConfig, type RunSummary } from './relay/runner.js';
export { buildBounce } from './relay/bounce.js';
export { openSqliteStore, openSqliteStoreReadOnly, type Store, type StoreReader, type QueueEntry } from './store/index.js';
export { CertificateStore, ensureSelfSigned, loadKeyPair, summarizeTls, describePeerCertificate } from './tls/index.js';
export {
  checkHost,
  checkDomain,
  DnsResolver,
  gradeFromFindings,
  gradeHost,
  gradeDowngrade,
  renderHostReport,
  renderDomainReport,
  type CheckHostOptions,
  type CheckDomainOptions,
  type DomainReport,
} from './check/index.js';
export type { HostReport, Finding as CheckFinding } from './check/index.js';
export { PostsealError, ConfigError } from './errors.js';
export type { TlsFacts, TlsOutcome, IncomingMessage, MessageSummary, ListenerTlsLevel } from './types.js';
