/**
 * Client options and their defaults: RFC 5321 §4.5.3.2 timeouts, reply limits, TLS material.
 *
 * Invariants: every wait on the network has a deadline from here; every reply read has a line
 * length and a line count limit from here. Tests pass short timeouts; nothing else differs.
 */
import type { ClientTlsOptions } from './tls-session.js';
import type { TlsaRecord } from '../tls/dane.js';
import type { Transcript } from './transcript.js';

export interface Timeouts {
  /** TCP connect (RFC 5321 gives none; Postfix smtp_connect_timeout is 30 s). */
  connectMs: number;
  /** RFC 5321 §4.5.3.2.1 initial 220: 5 minutes. */
  greetingMs: number;
  /** EHLO, STARTTLS, AUTH, RSET, NOOP replies (no RFC figure; the MAIL value is used). */
  commandMs: number;
  /** TLS handshake (STARTTLS or implicit). */
  tlsHandshakeMs: number;
  /** RFC 5321 §4.5.3.2.2 MAIL: 5 minutes. */
  mailMs: number;
  /** RFC 5321 §4.5.3.2.3 RCPT: 5 minutes. */
  rcptMs: number;
  /** RFC 5321 §4.5.3.2.4 DATA initiation (the 354): 2 minutes. */
  dataInitMs: number;
  /** RFC 5321 §4.5.3.2.5 data block (each write of content): 3 minutes. */
  dataBlockMs: number;
  /** RFC 5321 §4.5.3.2.6 DATA termination (reply to the final dot / BDAT LAST): 10 minutes. */
  dataFinalMs: number;
  /** QUIT reply; we close anyway after it. */
  quitMs: number;
}

export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = {
  connectMs: 30_000,
  greetingMs: 300_000,
  commandMs: 300_000,
  tlsHandshakeMs: 60_000,
  mailMs: 300_000,
  rcptMs: 300_000,
  dataInitMs: 120_000,
  dataBlockMs: 180_000,
  dataFinalMs: 600_000,
  quitMs: 10_000,
};

export type TimeoutName = keyof Timeouts;

/**
 * One deadline as it is applied: its length and the setting it came from. Every TIMEOUT message
 * names both, taken from the same object as the timer, so the text cannot disagree with the
 * limit that fired (`no complete reply to DATA within 120000 ms (dataInitMs)`).
 */
export interface Limit {
  ms: number;
  name: string;
}

export function limitOf(t: Timeouts, name: TimeoutName): Limit {
  return { ms: t[name], name };
}

/** Every timeout set to `ms` (tests, and `postseal send --timeout`). */
export function uniformTimeouts(ms: number): Timeouts {
  const out = { ...DEFAULT_TIMEOUTS };
  for (const k of Object.keys(out) as Array<keyof Timeouts>) out[k] = ms;
  return out;
}

export interface ReplyLimits {
  /** Longest reply line, octets without CRLF (RFC 5321 §4.5.3.1.5: 512; default 2048). */
  maxLineLength: number;
  /** Most lines in one reply (an endless "250-" stream is an error, not a memory problem). */
  maxReplyLines: number;
}

export const DEFAULT_REPLY_LIMITS: Readonly<ReplyLimits> = { maxLineLength: 2048, maxReplyLines: 100 };

export interface ConnectOptions {
  /** Address or name to connect to. */
  host: string;
  port: number;
  /** Connect to this Unix domain socket instead of host:port (LMTP); `host` then names the peer. */
  socketPath?: string;
  /** The name we mean to reach: SNI and the certificate name check. Default `host`. */
  serverName?: string;
  /** RFC 8314 implicit TLS (port 465): handshake before the greeting. */
  implicitTls?: boolean;
  /**
   * Refuse a TLS session whose chain is not trusted or whose certificate does not name
   * serverName (TLS_VERIFY_FAILED, before any SMTP byte inside TLS). Default true.
   */
  verifyCertificate?: boolean;
  /**
   * Level dane (RFC 7672): authenticate the peer by these TLSA records instead of PKIX; a
   * session that matches none is refused (TLS_DANE_FAILED) before any SMTP byte inside TLS.
   */
  dane?: DaneOptions;
  tls?: ClientTlsOptions;
  timeouts?: Partial<Timeouts>;
  limits?: Partial<ReplyLimits>;
  localAddress?: string;
  /** Shared record of the conversation; a new one is made when absent. */
  transcript?: Transcript;
}

/** What the client needs for level dane (RFC 7672 §3.1, §3.2). */
export interface DaneOptions {
  /** The usable TLSA records of the MX host (TlsaLookup.usable from policy/dane.ts lookupTlsa). */
  tlsa: TlsaRecord[];
  /**
   * Reference identifiers for DANE-TA(2) (RFC 7672 §3.2.2): the MX host name, and the TLSA base
   * domain when it differs (a CNAME was followed). Default: the serverName. DANE-EE(3) ignores them.
   */
  names?: string[];
}
