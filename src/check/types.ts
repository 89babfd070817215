/**
 * The checker's report types: the stable JSON schema (documented in SCHEMA.md) as TypeScript.
 *
 * Invariants: plain data only (JSON round-trips it unchanged); every field is present (null or
 * 'not-tested' when a probe did not run) so scripts never need to test for missing keys; adding a
 * field is a minor change, renaming or removing one bumps SCHEMA_VERSION.
 */
import type { CertificateSummary } from '../tls/summary.js';

export const SCHEMA_VERSION = 1 as const;

export const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const GRADES = ['A+', 'A', 'A-', 'B', 'C', 'D', 'F'] as const;
export type Grade = (typeof GRADES)[number];

export interface Finding {
  /** Stable identifier, e.g. 'starttls.injection'. Listed in SCHEMA.md. */
  id: string;
  severity: Severity;
  /** One line a person understands. */
  title: string;
  /** Evidence: what was sent and received, or why it matters. */
  detail: string;
  /** Where it was seen: 'host:port' (or the domain for policy findings). */
  where: string;
}

/** One step of the conversation. `tls` false means it travelled unauthenticated, in plaintext. */
export interface TranscriptEntry {
  dir: 'client' | 'server' | 'event';
  tls: boolean;
  text: string;
}

export interface ReplySummary {
  code: number;
  text: string;
}

export const TLS_VERSIONS = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
export type TlsVersion = (typeof TLS_VERSIONS)[number];

/** 'not-testable': the local OpenSSL cannot offer it, so the probe could not be made. */
export type ProbeOutcome = 'accepted' | 'refused' | 'not-tested' | 'not-testable';

export const CIPHER_CLASSES = ['null', 'export', 'rc4', '3des', 'anon', 'rsa-kx', 'cbc-sha1'] as const;
export type CipherClass = (typeof CIPHER_CLASSES)[number];

export interface CipherClassResult {
  outcome: ProbeOutcome;
  /** Cipher the server chose when accepted. */
  cipher: string | null;
}

export interface SmtpFacts {
  greeting: ReplySummary | null;
  greetingMs: number | null;
  /** Plaintext EHLO keywords (upper-case) → parameters; null when EHLO failed or implicit TLS. */
  ehlo: Record<string, string[]> | null;
  starttlsAdvertised: boolean;
  authBeforeTls: string[];
  starttlsReply: ReplySummary | null;
  /** Bytes that came with or after the 220 to STARTTLS, before the handshake (latin1, shown escaped). */
  bytesAfterStarttls: string | null;
  ehloAfterTls: Record<string, string[]> | null;
  starttlsOfferedAgain: boolean | null;
  authAfterTls: string[] | null;
}

export interface CertificateFacts {
  chain: CertificateSummary[];
  /** The same chain as base64 DER, leaf first (for DANE matching and for scripts). */
  chainDer: string[];
  /** Chain verifies against the system roots (plus --ca). */
  trusted: boolean;
  /** OpenSSL's verify error (e.g. 'CERT_HAS_EXPIRED'), null when trusted. */
  verifyError: string | null;
  /** Leaf names cover the host checked (RFC 6125). */
  nameMatches: boolean;
  nameError: string | null;
  daysLeft: number | null;
  /**
   * Every problem found, not only OpenSSL's first: time (expired / not yet valid, from the dates),
   * trust (no path to a trust anchor by signature, whatever the dates: 'self-signed' or
   * 'untrusted'), name. Empty when trusted and matching.
   */
  problems: CertProblem[];
  /** Certificate served when no SNI is sent: fingerprint and whether it is the same one. */
  noSni: { fingerprint256: string | null; same: boolean | null; subject: string | null } | null;
}

export const CERT_PROBLEMS = ['expired', 'not-yet-valid', 'self-signed', 'untrusted', 'name-mismatch'] as const;
export type CertProblem = (typeof CERT_PROBLEMS)[number];

export type CipherOrderOutcome = 'server' | 'client' | 'inconclusive' | 'not-tested';

export interface TlsResult {
  protocol: string;
  cipher: string;
  group: string | null;
  handshakeMs: number;
  versions: Record<TlsVersion, ProbeOutcome>;
  cipherClasses: Record<CipherClass, CipherClassResult>;
  /** Client-initiated renegotiation on TLS 1.2 (RFC 9325 §3.5: should be refused). */
  clientRenegotiation: ProbeOutcome;
  /** RFC 5746 secure renegotiation: Node does not expose the extension, so always 'not-tested'. */
  secureRenegotiation: 'not-tested';
  /** DHE/ADH suites (TLS ≤ 1.2): accepted or not, and the size of the server's DH group. */
  dhe: { outcome: ProbeOutcome; bits: number | null; cipher: string | null };
  /** Whether the server picks the suite by its own order (two handshakes, client order reversed). */
  cipherOrder: { outcome: CipherOrderOutcome; evidence: string };
}

export type InjectionOutcome = 'executed' | 'discarded' | 'not-tested' | 'inconclusive';
export type StateOutcome = 'kept' | 'reset' | 'not-tested' | 'inconclusive';
export type CommandOutcome = 'accepted' | 'refused' | 'not-tested' | 'inconclusive';
export type EarlyTalkerOutcome = 'answered' | 'refused' | 'not-tested' | 'inconclusive';

export interface ProbeResults {
  injectionWholeLine: { outcome: InjectionOutcome; evidence: string };
  injectionPartialLine: { outcome: InjectionOutcome; evidence: string };
  stateReset: { outcome: StateOutcome; evidence: string };
  /** MAIL before STARTTLS: 530 expected on submission (RFC 3207 §4). */
  mailBeforeTls: ReplySummary | null;
  smuggling: SmugglingResult[] | null;
  /** A second STARTTLS inside TLS: 220 means accepted (RFC 3207 §4.2: must be refused). */
  starttlsAgain: { outcome: CommandOutcome; evidence: string };
  /** `STARTTLS x` in plaintext: 220 means accepted (RFC 3207 §4: 501 expected). */
  starttlsArgument: { outcome: CommandOutcome; evidence: string };
  /** EHLO sent before the greeting: answered normally, or refused/closed (RFC 5321 §3.1). */
  earlyTalker: { outcome: EarlyTalkerOutcome; evidence: string };
}

export interface SmugglingResult {
  /** Variant name, e.g. '<LF>.<LF>'. */
  variant: string;
  /** 'end-of-data': the server treated the variant as the end of the message (a smuggling risk). */
  outcome: 'end-of-data' | 'not-end-of-data' | 'rejected' | 'inconclusive' | 'error';
  evidence: string;
}

export interface HostReport {
  schemaVersion: typeof SCHEMA_VERSION;
  kind: 'host';
  target: { host: string; address: string; port: number; mode: 'starttls' | 'implicit'; submission: boolean };
  startedAt: string;
  durationMs: number;
  /** 'error': the host could not be checked at all (see error); exit status 2. */
  status: 'checked' | 'error';
  error: { code: string; message: string } | null;
  grade: Grade | null;
  findings: Finding[];
  smtp: SmtpFacts;
  tls: TlsResult | null;
  certificate: CertificateFacts | null;
  probes: ProbeResults;
  transcript: TranscriptEntry[];
}
