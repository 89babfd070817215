/**
 * Outbound TLS levels (ARCHITECTURE.md "TLS levels"), ordered weakest to strongest, with
 * predicates written against the order, as Postfix src/tls/tls_level.c does.
 *
 * Invariants: the order of TLS_LEVELS is the order of strength; every decision about whether TLS
 * is mandatory or the certificate must be checked goes through requiresTls()/verifiesCert().
 */

/**
 * - none: never STARTTLS (plaintext only).
 * - may: opportunistic (RFC 7435): STARTTLS when offered, any certificate, plaintext otherwise.
 * - encrypt: TLS required, any certificate (Postfix "encrypt").
 * - verify: TLS required, trusted chain (PKIX) and the certificate names the host we meant to reach.
 * - dane: TLS required, the certificate matches the usable TLSA records the caller passed
 *   (RFC 7672 §3.1: DANE-EE(3) by key or certificate alone, DANE-TA(2) with chain and name
 *   checks); PKIX trust is not consulted (Postfix "dane" with usable TLSA records).
 */
export const TLS_LEVELS = ['none', 'may', 'encrypt', 'verify', 'dane'] as const;
export type TlsLevel = (typeof TLS_LEVELS)[number];

/**
 * What a connection actually achieved: no TLS, TLS without an authenticated peer, TLS with the
 * peer authenticated by PKIX, TLS with the peer authenticated by DANE.
 */
export const TLS_REACHED = ['none', 'encrypt', 'verify', 'dane'] as const;
export type TlsReached = (typeof TLS_REACHED)[number];

export function tlsLevelRank(level: TlsLevel): number {
  return TLS_LEVELS.indexOf(level);
}

export function isTlsLevel(value: string): value is TlsLevel {
  return (TLS_LEVELS as readonly string[]).includes(value);
}

/** True when `level` is at least `floor`. */
export function atLeast(level: TlsLevel, floor: TlsLevel): boolean {
  return tlsLevelRank(level) >= tlsLevelRank(floor);
}

/** STARTTLS is attempted at all (may and up). */
export function triesTls(level: TlsLevel): boolean {
  return atLeast(level, 'may');
}

/** No plaintext fallback: mail is not sent unless TLS is established (encrypt and up). */
export function requiresTls(level: TlsLevel): boolean {
  return atLeast(level, 'encrypt');
}

/**
 * The peer must be authenticated before any mail goes (verify and up): by PKIX at verify, by
 * TLSA records at dane (checksPkix / usesDane say which).
 */
export function verifiesCert(level: TlsLevel): boolean {
  return atLeast(level, 'verify');
}

/** The peer is authenticated by TLSA records, not by PKIX (dane; Postfix TLS_DANE_BASED). */
export function usesDane(level: TlsLevel): boolean {
  return atLeast(level, 'dane');
}

/** The chain must be PKIX-trusted and name the intended host (verify only; Postfix TLS_MUST_PKIX). */
export function checksPkix(level: TlsLevel): boolean {
  return verifiesCert(level) && !usesDane(level);
}

/**
 * Whether a reached state satisfies a level (used by policies that raise the level later). A
 * DANE-authenticated peer also satisfies verify (RFC 8689 §4.2.1 accepts either for REQUIRETLS).
 */
export function satisfies(reached: TlsReached, level: TlsLevel): boolean {
  if (usesDane(level)) return reached === 'dane';
  if (verifiesCert(level)) return reached === 'verify' || reached === 'dane';
  if (requiresTls(level)) return reached !== 'none';
  return true;
}
