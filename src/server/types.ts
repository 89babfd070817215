/**
 * Server configuration and the small interfaces the server needs from the outside world
 * (go-smtp's habit: a tiny required interface, everything else optional).
 */
import type { SecureContext, TLSSocketOptions } from 'node:tls';
import type { AuthVerdicts, IncomingMessage, ListenerTlsLevel } from '../types.js';
import type { Reply } from '../protocol/reply.js';
import type { BodySpool, SpooledBody } from '../store/spool.js';
import type { RecipientResolution } from '../store/resolve.js';
import type { Logger } from '../log.js';
import type { ServerEvents } from './events.js';
import type { SenderTestHook } from './sender-test.js';

export interface ListenerOptions {
  /** 'mx', 'submission', 'submissions' or any name the config gives. */
  name: string;
  host: string;
  port: number;
  tls: ListenerTlsLevel;
  /** 'required': MAIL needs AUTH first (submission); 'none': AUTH not offered (mx). */
  auth: 'none' | 'optional' | 'required';
  /** This listener's own connection cap (limits.maxConnections caps all listeners together). */
  maxConnections?: number;
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
  /**
   * Slowest accepted DATA/BDAT content, bytes per second (Postfix smtpd_min_data_rate): the phase
   * must be over by dataTimeoutMs plus the time the bytes received buy at this rate. 0: off.
   */
  minDataRate: number;
  handshakeTimeoutMs: number;
  /** Connections of all listeners together. */
  maxConnections: number;
  /** Connections per client: per IPv4 address, per IPv6 /64 (one host or site holds a whole /64). */
  maxConnectionsPerIp: number;
  /** A message body past this many bytes goes to a spool file as it arrives (when there is a spool). */
  spoolThreshold: number;
  /** Bytes of message bodies all sessions together may hold in memory; past it DATA/BDAT get 452 4.3.1. */
  maxBodyMemory: number;
  /** Client errors (4xx/5xx replies) before 421 and close, like Postfix smtpd_hard_error_limit. */
  maxErrors: number;
  /** Wait this long before the greeting; bytes received meanwhile mark an early talker. 0 = off. */
  greetingDelayMs: number;
  /** AUTH attempts: counting, delays, in-flight caps, client networks (see AuthLimiter in context.ts). */
  auth: AuthLimits;
  /** How long in-flight transactions may run after shutdown starts. */
  shutdownGraceMs: number;
}

export interface AuthLimits {
  /** Failed AUTH attempts per client network, and per account, within windowMs before delays start. */
  maxFailures: number;
  /** How long a failure is remembered. */
  windowMs: number;
  /** The first delay past maxFailures; it doubles with every further failure. */
  delayMs: number;
  /** Ceiling of the delay (kept under the usual client timeouts, so a real user still gets in). */
  maxDelayMs: number;
  /** AUTH attempts being checked or waiting out a delay at once, per client network (454 beyond). */
  maxInFlightPerNetwork: number;
  /** The same per account name, from networks the account has not logged in from. */
  maxInFlightPerAccount: number;
  /** IPv4 clients are grouped per this prefix (32 = per address, 24 = per /24). */
  ipv4Prefix: number;
  /** IPv6 clients are grouped per this prefix (64: one host usually owns a whole /64). */
  ipv6Prefix: number;
  /** Upper bound on tracked networks, and separately on tracked accounts (memory bound). */
  maxTrackedKeys: number;
}

// The defaults of Limits are the config schema's (src/config/schema.ts; DEFAULT_LIMITS in config.ts).

/** What ServerOptions.verifier says about one received message. */
export interface VerifierResult {
  /** `Authentication-Results: ...\r\n` (RFC 8601). */
  header: string;
  /** The content to store (Authentication-Results claiming our authserv-id removed); null for a spooled message. */
  data: Buffer | null;
  /**
   * A spooled message: same-length overwrites of its spool file that obscure forged
   * Authentication-Results fields (RFC 8601 §5); applied before the message is stored.
   */
  patches?: readonly { offset: number; bytes: Uint8Array }[];
  verdicts: AuthVerdicts;
  /** DMARC p=quarantine failed: store with the quarantine flag. */
  quarantine: boolean;
  /** Not null: refuse the message with this reply (550 5.7.1) instead of storing it. */
  reject: Reply | null;
}

/** Where accepted messages go. resolve() only once the message is durable. */
export interface MessageSink {
  accept(msg: IncomingMessage): Promise<{ id: string }>;
}

export interface UserVerifier {
  verifyUser(address: string, password: string): Promise<boolean>;
  /**
   * The sender patterns of a user besides the login itself: exact addresses, '*@domain' (any
   * local part at that domain) or '*' (any sender). Read once per session, after AUTH succeeds.
   * Without this method an authenticated user may send as their login only.
   */
  senderPatterns?(address: string): readonly string[];
}

/**
 * The address table (users, aliases, sub-addressing, catch-alls: store/resolve.ts). Called at
 * every RCPT TO for a local domain, and at MAIL for the sender check, on the event loop: it must
 * be synchronous and cheap (indexed reads, or a cache). The table is read per call, so a change
 * (`postseal alias add`) takes effect at the next RCPT.
 */
export interface RecipientDirectory {
  /**
   * What a local address becomes: final local mailboxes and external (forwarding) targets; no
   * target at all = unknown (550 5.1.1). `forSender`: catch-alls do not count (senders.ts).
   */
  resolve(address: string, opts?: { forSender?: boolean }): Pick<RecipientResolution, 'mailboxes' | 'external' | 'problems'>;
}

/** The current TLS material; null means no certificate (STARTTLS answers 454). */
export interface TlsProvider {
  /** Whether a certificate is loaded (decides whether EHLO offers STARTTLS; no allocation). */
  hasCertificate(): boolean;
  /** Options for wrapping an existing socket (STARTTLS) or for tls.createServer (implicit TLS). */
  serverOptions(): (TLSSocketOptions & { secureContext: SecureContext }) | null;
}

export type { Logger } from '../log.js';

export interface ServerOptions {
  hostname: string;
  /** Domains whose mail is delivered to local mailboxes. */
  localDomains: string[];
  listeners: ListenerOptions[];
  limits: Limits;
  /**
   * A bare CR or LF in message content (SMTP smuggling defence) and a command line ending in a
   * bare LF (RFC 5321 §2.3.8): 'reject' refuses them (content: 550 5.6.0; command: 500 5.5.2 and
   * close), 'normalize' turns them into CRLF.
   */
  bareLineEndings: 'reject' | 'normalize';
  sink: MessageSink;
  /**
   * Verification of received mail (src/auth/verify.ts): called once per message on the mx
   * listener only, after its end was read and before it is stored, with the content as received
   * (in memory, or `{ path }` of its fsync'd spool file, read as a stream). Returns the
   * Authentication-Results header to prepend, the content with forged headers removed (or, for a
   * spooled body, the patches that obscure them in the file), the verdicts, whether to
   * quarantine, and a reply that refuses the message instead (policy).
   */
  verifier?: (msg: { data: Buffer | { path: string }; ip: string; helo: string; mailFrom: string }) => Promise<VerifierResult>;
  /**
   * Where bodies past limits.spoolThreshold go as they arrive (the store's spool directory). None:
   * bodies stay in memory, still bounded by limits.maxBodyMemory (452 past it).
   */
  spool?: BodySpool | null;
  users: UserVerifier | null;
  /**
   * Known local recipients; RCPT for an unknown local address gets 550 5.1.1. Absent or null
   * (library use without a store, or the catch-all option): every local recipient is accepted.
   * postmaster is always accepted (RFC 5321 §4.5.1).
   */
  recipients?: RecipientDirectory | null;
  /** Received header: name the authenticated user, as Postfix does (default true). */
  received?: { showAuthenticatedSender: boolean };
  /**
   * DKIM signing at submission (src/auth/dkim-sign.ts): called once per message of an
   * authenticated session on a listener with AUTH, before the message is stored. `data` is the
   * content in memory (for a spooled body: none; the content is the spool file). Returns the
   * DKIM-Signature fields to prepend, or null (no key for the author domain). A rejection leaves
   * the message unstored (451), as a milter's tempfail would.
   */
  signer?: (msg: { mailFrom: string; data: Uint8Array[]; spooled: SpooledBody | null }) => Promise<Uint8Array | null>;
  /**
   * ARC sealing of forwarded mail (src/auth/arc-seal.ts, RFC 8617): called once per message on
   * the mx listener that local aliases forward to other hosts (Envelope.forwardedFrom), after
   * verification and before the message is stored. `received` is our Received header, `data` the
   * content pieces after it (our Authentication-Results first), `spooled` the rest in its spool
   * file; `validation` our ARC verdict; `domains` the forwarding local addresses' domains. Returns
   * the ARC header fields to put after our Received header, or null (not sealed). A rejection
   * leaves the message unstored (451), as for the signer.
   */
  sealer?: (msg: { received: string; data: Uint8Array[]; spooled: SpooledBody | null; authResults: string; validation: string; domains: readonly string[] }) => Promise<Uint8Array | null>;
  tls: TlsProvider;
  logger: Logger;
  /** Observer of sessions, TLS, messages and refusals (metrics, events.ts); absent or null: none. */
  events?: ServerEvents | null;
  /** The sender test's RCPT and STARTTLS hooks (server/sender-test.ts, http.senderTest); absent or null: off. */
  senderTest?: SenderTestHook | null;
}
