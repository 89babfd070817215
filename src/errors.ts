/**
 * Error classes. Every error postseal raises on purpose carries a literal `code`, so callers
 * (and JSON output) can branch on it without parsing messages.
 */
export class PostsealError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PostsealError';
    this.code = code;
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
