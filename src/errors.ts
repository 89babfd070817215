/**
 * Error classes and the closed list of their codes. Every error postseal raises on purpose
 * carries a literal `code` from ERROR_CODES, so callers (and JSON output) can branch on it
 * without parsing messages.
 *
 * Invariant: a code is added here before it is used anywhere (test/unit/error-codes.test.ts
 * reads src/ for code literals that are not in the list); client/errors.ts names the subset the
 * client raises.
 */
/** The codes the SMTP client raises (client/errors.ts SmtpClientError). */
export const CLIENT_ERROR_CODES = [
  'CONNECT_FAILED',
  'CONNECTION_CLOSED',
  'TIMEOUT',
  'PROTOCOL_ERROR',
  'GREETING_REFUSED',
  'EHLO_REFUSED',
  'TLS_REQUIRED_NOT_OFFERED',
  'STARTTLS_REFUSED',
  'TLS_HANDSHAKE_FAILED',
  'TLS_VERIFY_FAILED',
  // Level dane: the certificate matches no usable TLSA record (RFC 7672 §3.1), or none was given.
  'TLS_DANE_FAILED',
  'TLS_ALREADY_ACTIVE',
  'CLIENT_UPGRADED',
  'CLIENT_CLOSED',
  'AUTH_NEEDS_TLS',
  'AUTH_NOT_OFFERED',
  'AUTH_FAILED',
  'CRLF_INJECTION',
  'INVALID_ARGUMENT',
  'BARE_LINE_ENDING',
  'NOT_SUPPORTED',
  'MESSAGE_TOO_BIG',
  'REQUIRETLS_NOT_SUPPORTED',
  'REJECTED',
] as const;

export const ERROR_CODES = [
  ...CLIENT_ERROR_CODES,
  // The client side of a connection (transport/client-connection.ts).
  'CONNECTION_DETACHED',
  // The store.
  'STORE_BAD_ADDRESS',
  'STORE_BAD_ALIAS',
  'STORE_BAD_HANDOFF',
  'STORE_BAD_ID',
  'STORE_BAD_LEASE',
  'STORE_BAD_LIMIT',
  'STORE_BAD_PASSWORD',
  'STORE_BAD_POLICY',
  'STORE_BAD_SENDER',
  'STORE_BODY_MISSING',
  'STORE_CLOSED',
  'STORE_COMMIT_FAILED',
  'STORE_CORRUPT',
  'STORE_ID_COLLISION',
  'STORE_LOCKED',
  'STORE_NO_RECIPIENTS',
  'STORE_NO_WAL',
  'STORE_NOT_FOUND',
  // store copy: the target database already holds messages (and --append was not given).
  'STORE_NOT_EMPTY',
  'STORE_SCHEMA_MISSING',
  'STORE_SCHEMA_OLD',
  'STORE_SCHEMA_TOO_NEW',
  'STORE_SPOOL_CLOSED',
  'STORE_SPOOL_FAILED',
  'STORE_WRITE_FAILED',
  'STORE_WRITER_FAILED',
  // The PostgreSQL store (store/pg/, issue 13): the server cannot be reached or dropped the
  // connection (the SMTP server answers 451 4.3.0); a URL it refuses (a password in it); a write
  // through a store opened read-only; a read that PostgreSQL refused for another reason.
  'STORE_UNAVAILABLE',
  'STORE_BAD_URL',
  'STORE_READ_ONLY',
  'STORE_READ_FAILED',
  'USER_EXISTS',
  // API tokens and the web console (issue 14).
  'TOKEN_EXISTS',
  'TOKEN_BAD_NAME',
  'HTTP_LISTEN',
  // The JSON API under /api/v1 (src/http/api/): bad request, unknown id, body too large, 429,
  // and a checker target refused by the SSRF guard (non-global address, 422).
  'HTTP_BAD_REQUEST',
  'HTTP_NOT_FOUND',
  'HTTP_BODY_TOO_LARGE',
  'HTTP_RATE_LIMITED',
  'CHECK_TARGET_REFUSED',
  // The checker.
  'CHECK_BAD_COMMAND',
  'CHECK_BAD_REPLY',
  'CHECK_CLOSED',
  'CHECK_CONNECT',
  'CHECK_DNS',
  'CHECK_EHLO',
  'CHECK_FAILED',
  'CHECK_GREETING',
  'CHECK_TIMEOUT',
  'CHECK_TLS',
  // The sending policy: the one DNS client (policy/dns.ts) and MTA-STS (policy/mta-sts.ts).
  'DNS_BAD_ANSWER',
  'DNS_FAILED',
  'DNS_TIMEOUT',
  // TLS: certificates, reloads, the server-side handshake.
  'TLS_CERT_CONFLICT',
  'TLS_CERT_INVALID',
  'TLS_NO_CERTIFICATE',
  'TLS_WATCH_FAILED',
  'TLS_HANDSHAKE_TIMEOUT',
  // TLS-RPT reports (policy/tlsrpt-send.ts).
  'TLSRPT_BAD_URI',
  'TLSRPT_POST_FAILED',
  // Configuration and the command line.
  'CONFIG_INVALID',
  'CONFIG_UNKNOWN_KEY',
  'CONFIG_UNREADABLE',
  'USAGE',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export class PostsealError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PostsealError';
    this.code = code;
  }
}

/** A command line that cannot be used (a bad flag value, a missing argument): exit status 2. */
export class UsageError extends PostsealError {
  declare readonly code: 'USAGE';
  constructor(message: string) {
    super('USAGE', message);
    this.name = 'UsageError';
  }
}

/**
 * Config error codes: a bad value, an unknown (or renamed) key, a config file that cannot be read
 * or is not JSON.
 */
export type ConfigErrorCode = 'CONFIG_INVALID' | 'CONFIG_UNKNOWN_KEY' | 'CONFIG_UNREADABLE';

/**
 * A configuration file or flag that cannot be used; the message names the key, the value and
 * where it came from (`key` and `source` say the same for programs).
 */
export class ConfigError extends PostsealError {
  declare readonly code: ConfigErrorCode;
  /** The dotted config key ('relay.tlsPolicy.bank.example'), when one is to blame. */
  readonly key: string | null;
  /** Where the value came from: '--tls-policy bank.example=strict', 'config file /x.json', 'config'. */
  readonly source: string | null;
  constructor(message: string, opts: { code?: ConfigErrorCode; key?: string; source?: string } = {}) {
    super(opts.code ?? 'CONFIG_INVALID', message);
    this.name = 'ConfigError';
    this.key = opts.key ?? null;
    this.source = opts.source ?? null;
  }
}
