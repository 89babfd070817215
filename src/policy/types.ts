/**
 * The sending policy's shared vocabulary (RFC 8461 MTA-STS, RFC 7672 DANE for SMTP, RFC 8460
 * TLS-RPT, RFC 8689 REQUIRETLS): what a lookup found, what the engine decided per MX host, and
 * what an attempt reports for TLS-RPT. Pure types; the modules beside this one fill them in:
 * dns.ts (the one DNS client, AD bit), mta-sts.ts (policy fetch, parse, persistent cache),
 * dane.ts (TLSA lookup and usability), engine.ts (precedence), tlsrpt.ts (counting, reports).
 */
import type { TlsaRecord } from '../tls/dane.js';
import type { StoredMtaStsPolicy } from '../store/types.js';

/** Which rule decided: an operator's table entry, DANE, MTA-STS, or the default level. */
export type PolicySource = 'table' | 'dane' | 'mta-sts' | 'default';

/** One TLSA record (RFC 6698 §2.1); defined in tls/dane.ts, where the client's matcher needs it. */
export type { TlsaRecord } from '../tls/dane.js';

/**
 * TLSA for one MX host and port (RFC 7672 §2.2):
 * - secure: the answer (or its NXDOMAIN/NODATA) was DNSSEC-validated (AD bit from a trusted resolver);
 * - insecure: not validated: DANE does not apply;
 * - bogus: validation failed (SERVFAIL from a validating resolver): the MX must not be used;
 * - error: no answer (timeout, refused): the attempt is deferred if DANE might apply.
 * `usable` holds the records usable in SMTP (DANE-TA(2) and DANE-EE(3) with known selector and
 * matching type, §3.1.3); secure with records but none usable means "encrypt, no authentication".
 */
export interface TlsaLookup {
  status: 'secure' | 'insecure' | 'bogus' | 'error';
  records: TlsaRecord[];
  usable: TlsaRecord[];
  detail: string | null;
}

/**
 * An MTA-STS policy as the sender holds it (RFC 8461 §3.2, §5.1): the store's cached shape
 * (id = the TXT id at fetch time, maxAge in seconds capped at 31557600, times in ms since epoch,
 * text = the policy as fetched, whose lines are TLS-RPT's policy-string, RFC 8460 §4.4).
 */
export type MtaStsPolicy = StoredMtaStsPolicy;

/** TLS-RPT result types (RFC 8460 §4.3). */
export const TLSRPT_FAILURES = [
  'starttls-not-supported',
  'certificate-host-mismatch',
  'certificate-expired',
  'certificate-not-trusted',
  'validation-failure',
  'tlsa-invalid',
  'dnssec-invalid',
  'dane-required',
  'sts-policy-fetch-error',
  'sts-policy-invalid',
  'sts-webpki-invalid',
] as const;
export type TlsRptFailure = (typeof TLSRPT_FAILURES)[number];

/** What an MTA-STS lookup for one domain gave the sender. */
export interface MtaStsLookup {
  /** The policy in force (from the cache or just fetched), or null when there is none. */
  policy: MtaStsPolicy | null;
  from: 'cache' | 'fetched' | 'none';
  /** A fetch or parse problem (the cached policy, if unexpired, still applies: RFC 8461 §5.1). */
  failure: { type: Extract<TlsRptFailure, 'sts-policy-fetch-error' | 'sts-policy-invalid' | 'sts-webpki-invalid'>; detail: string } | null;
}

/** The persistent MTA-STS cache (in the store: it must survive a restart, RFC 8461 §5.1). */
export interface MtaStsCache {
  getMtaSts(domain: string): MtaStsPolicy | null | Promise<MtaStsPolicy | null>;
  putMtaSts(policy: MtaStsPolicy): Promise<void>;
  forgetMtaSts(domain: string): Promise<boolean>;
}

/** One attempt's outcome against a policy domain, counted for TLS-RPT (RFC 8460 §4.4). */
export interface TlsRptEvent {
  policyDomain: string;
  policyType: 'sts' | 'tlsa' | 'no-policy-found';
  /** MTA-STS policy lines or TLSA records as presentation strings (RFC 8460 §4.4 policy-string). */
  policyStrings: string[];
  mxHost: string | null;
  receivingIp: string | null;
  /** 'success' or a failure result type. */
  result: 'success' | TlsRptFailure;
  detail: string | null;
  at: number;
}

export interface TlsRptRecorder {
  record(event: TlsRptEvent): void;
}
