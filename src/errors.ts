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

/** A configuration file or flag that cannot be used; the message names the key and the value. */
export class ConfigError extends PostsealError {
  constructor(message: string) {
    super('CONFIG_INVALID', message);
    this.name = 'ConfigError';
  }
}
