/**
 * Client error codes and the error class the client throws. Every failure a caller can act on has
 * a literal code; errors caused by a server reply carry that reply.
 *
 * Invariants: codes are a closed `as const` list; `permanent` says whether retrying the same
 * attempt later can help (a queue runner defers on false, bounces on true).
 */
import { PostsealError, type CLIENT_ERROR_CODES as ClientCodes } from '../errors.js';
import type { Reply } from '../protocol/reply.js';
import type { TlsSessionInfo } from './tls-session.js';

export { CLIENT_ERROR_CODES } from '../errors.js';
export type ClientErrorCode = (typeof ClientCodes)[number];

/** Codes for which trying again later cannot help. */
const PERMANENT: ReadonlySet<ClientErrorCode> = new Set<ClientErrorCode>([
  'CRLF_INJECTION',
  'INVALID_ARGUMENT',
  'BARE_LINE_ENDING',
  'NOT_SUPPORTED',
  'MESSAGE_TOO_BIG',
  'REQUIRETLS_NOT_SUPPORTED',
  'AUTH_NEEDS_TLS',
]);

export class SmtpClientError extends PostsealError {
  override readonly code: ClientErrorCode;
  /** The server reply that caused the error, when there was one. */
  readonly reply: Reply | null;
  /** TLS facts when the error came after a handshake (TLS_VERIFY_FAILED: what was presented). */
  readonly tls: TlsSessionInfo | null;
  constructor(code: ClientErrorCode, message: string, options: { reply?: Reply | null; tls?: TlsSessionInfo | null; cause?: unknown } = {}) {
    super(code, message, { cause: options.cause });
    this.name = 'SmtpClientError';
    this.code = code;
    this.reply = options.reply ?? null;
    this.tls = options.tls ?? null;
  }

  /** Permanent: a 5xx reply, or a code no retry can fix. 4xx replies and network trouble are not. */
  get permanent(): boolean {
    if (this.reply !== null) return this.reply.code >= 500;
    return PERMANENT.has(this.code);
  }
}

export function isClientError(err: unknown): err is SmtpClientError {
  return err instanceof SmtpClientError;
}
