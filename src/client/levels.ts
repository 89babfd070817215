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
 * - verify: TLS required, trusted chain and the certificate names the host we meant to reach.
 */
export const TLS_LEVELS = ['none', 'may', 'encrypt', 'verify'] as const;
export type TlsLevel = (typeof TLS_LEVELS)[number];

/** What a connection actually achieved: no TLS, TLS without a verified peer, TLS verified. */
export const TLS_REACHED = ['none', 'encrypt', 'verify'] as const;
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

/** The peer certificate must chain to a trusted root and name the intended host (verify). */
export function verifiesCert(level: TlsLevel): boolean {
  return atLeast(level, 'verify');
}

/** Whether a reached state satisfies a level (used by policies that raise the level later). */
export function satisfies(reached: TlsReached, level: TlsLevel): boolean {
  if (verifiesCert(level)) return reached === 'verify';
  if (requiresTls(level)) return reached !== 'none';
  return true;
}
