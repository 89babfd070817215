/**
 * The server session's state types and the narrow API the command handlers see (commands.ts,
 * auth.ts): they read and replace Session facts and the Envelope, and ask the session for the few
 * actions that change its phase. They never see the connection or the dispatcher.
 *
 * Invariants: Session facts (TLS, EHLO name, AUTH identity) and the Envelope (one transaction)
 * are separate objects; RSET/EHLO replace the envelope, STARTTLS replaces both (RFC 3207 §4.2).
 * This module imports no other server module but context.ts's limiter type, so the table of
 * commands and the session that runs it do not import each other.
 */
import type { TLSSocket, TLSSocketOptions } from 'node:tls';
import type { LineEndingStream } from '../protocol/data.js';
import type { Reply } from '../protocol/reply.js';
import type { TlsFacts } from '../types.js';
import type { RecipientDsn, Ret } from '../protocol/dsn.js';
import type { AuthLimiter } from './context.js';
import type { ListenerOptions, ServerOptions } from './types.js';

export type Phase = 'greeting' | 'command' | 'auth' | 'data' | 'bdat' | 'busy' | 'closed';

/** Facts about the connection that survive transactions (reset by STARTTLS only). */
export interface SessionFacts {
  heloName: string | null;
  esmtp: boolean;
  authUser: string | null;
  tls: TlsFacts | null;
  /** A command line arrived with more input already behind it (RFC 2920 pipelining; the sender test reports it). */
  pipelined: boolean;
}

export interface Envelope {
  mailFrom: string;
  localRecipients: string[];
  remoteRecipients: string[];
  requireTls: boolean;
  body: '7BIT' | '8BITMIME' | null;
  smtpUtf8: boolean;
  /** RFC 3461 §4.3/§4.4: RET and ENVID (decoded) from MAIL. */
  ret: Ret | null;
  envId: string | null;
  /**
   * RFC 3461 §4.1/§4.2: NOTIFY/ORCPT per recipient, for those that gave either; also per external
   * alias target (forwarded), whose ORCPT is the client's RCPT when the client gave none.
   */
  recipientDsn: Record<string, RecipientDsn>;
  /**
   * The address table's final local mailboxes for the local recipients (server/commands.ts rcpt),
   * without duplicates. localRecipients stays what the client gave (the envelope as accepted).
   */
  mailboxes: string[];
  /**
   * External targets of local aliases (forwarding) → the client's RCPT they were expanded from;
   * queued for remote delivery. Also read by ARC sealing of forwarded mail.
   */
  forwardedFrom: Record<string, string>;
  /** Set once BDAT was used in this transaction (DATA is then refused, RFC 3030 §2). */
  bdat: { size: number; lineEndings: LineEndingStream } | null;
}

export function newFacts(tls: TlsFacts | null): SessionFacts {
  return { heloName: null, esmtp: false, authUser: null, tls, pipelined: false };
}

/** Continuation of a multi-step AUTH exchange. */
export type AuthStep = (line: string) => Reply | Promise<Reply | null> | null;

/** What a command handler may see and do. */
export interface SessionApi {
  readonly opts: ServerOptions;
  readonly listener: ListenerOptions;
  readonly remoteAddress: string;
  readonly authLimiter: AuthLimiter;
  facts: SessionFacts;
  envelope: Envelope | null;
  /** False once the session ended or the server began to drain (a waiting step gives up). */
  readonly active: boolean;
  /** Drops the envelope and whatever body was being received for it (RSET, EHLO, STARTTLS). */
  endTransaction(): void;
  closeWith(r: Reply, reason: string): void;
  /** DATA: answers 354 (or 452 past the body budget) and reads the content. */
  beginData(): void;
  /** BDAT: reads the chunk of `size` bytes whatever the verdict; `error` is answered after it. */
  beginBdat(size: number, last: boolean, error: Reply | null): void;
  /** AUTH: the next line the client sends goes to `step` (phase 'auth'). */
  expectAuthLine(step: AuthStep): void;
  /**
   * STARTTLS: write `ready`, purge the input read so far and handshake (transport/). Resolves with
   * the TLS socket; rejects when the handshake failed (the connection is then closed).
   */
  upgradeToTls(ready: string, options: TLSSocketOptions): Promise<TLSSocket>;
}
