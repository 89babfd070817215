/**
 * Server configuration and the small interfaces the server needs from the outside world
 * (go-smtp's habit: a tiny required interface, everything else optional).
 */
import type { SecureContext, TLSSocketOptions } from 'node:tls';
import type { IncomingMessage, ListenerTlsLevel } from '../types.js';

export interface ListenerOptions {
  /** 'mx', 'submission', 'submissions' or any name the config gives. */
  name: string;
  host: string;
  port: number;
  tls: ListenerTlsLevel;
  /** 'required': MAIL needs AUTH first (submission); 'none': AUTH not offered (mx). */
  auth: 'none' | 'optional' | 'required';
}

export interface Limits {
  /** Longest command line in octets, CRLF excluded (RFC 5321 §4.5.3.1.4 asks for at least 512). */
  maxLineLength: number;
  maxMessageSize: number;
  /** RFC 5321 §4.5.3.1.8: at least 100. */
  maxRecipients: number;
  /** RFC 5321 §4.5.3.2.7: at least 5 minutes waiting for a command. */
  commandTimeoutMs: number;
  /** Waiting for DATA/BDAT content. */
  dataTimeoutMs: number;
  handshakeTimeoutMs: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  /** Client errors (4xx/5xx replies) before 421 and close, like Postfix smtpd_hard_error_limit. */
  maxErrors: number;
  /** Wait this long before the greeting; bytes received meanwhile mark an early talker. 0 = off. */
  greetingDelayMs: number;
  authFailures: { max: number; windowMs: number };
  /** How long in-flight transactions may run after shutdown starts. */
  shutdownGraceMs: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxLineLength: 2048,
  maxMessageSize: 35 * 1024 * 1024,
  maxRecipients: 1000,
  commandTimeoutMs: 300_000,
  dataTimeoutMs: 300_000,
  handshakeTimeoutMs: 30_000,
  maxConnections: 2000,
  maxConnectionsPerIp: 200,
  maxErrors: 20,
  greetingDelayMs: 0,
  authFailures: { max: 5, windowMs: 300_000 },
  shutdownGraceMs: 30_000,
};

/** Where accepted messages go. resolve() only once the message is durable. */
export interface MessageSink {
  accept(msg: IncomingMessage): Promise<{ id: string }>;
}

export interface UserVerifier {
  verifyUser(address: string, password: string): Promise<boolean>;
}

/** The current TLS material; null means no certificate (STARTTLS answers 454). */
export interface TlsProvider {
  /** Whether a certificate is loaded (decides whether EHLO offers STARTTLS; no allocation). */
  hasCertificate(): boolean;
  /** Options for wrapping an existing socket (STARTTLS) or for tls.createServer (implicit TLS). */
  serverOptions(): (TLSSocketOptions & { secureContext: SecureContext }) | null;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  /** When present and false for a level, callers may skip building that level's log object. */
  isLevelEnabled?(level: 'debug' | 'info' | 'warn' | 'error'): boolean;
}

export interface ServerOptions {
  hostname: string;
  /** Domains whose mail is delivered to local mailboxes. */
  localDomains: string[];
  listeners: ListenerOptions[];
  limits: Limits;
  /** What to do with a bare CR or LF inside message content (SMTP smuggling defence). */
  bareLineEndings: 'reject' | 'normalize';
  sink: MessageSink;
  users: UserVerifier | null;
  tls: TlsProvider;
  logger: Logger;
}
