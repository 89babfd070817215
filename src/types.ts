/**
 * Types shared by the server, the store, the client and the checker. Plain data only.
 */

/** What a negotiated TLS session looked like; recorded per session and stored per message. */
export interface TlsFacts {
  /** 'TLSv1.3', 'TLSv1.2', ... as Node reports it. */
  protocol: string;
  /** OpenSSL cipher name, e.g. 'TLS_AES_256_GCM_SHA384'. */
  cipher: string;
  /** Key-exchange group when known (client side: 'X25519'); null when Node does not say. */
  group: string | null;
  /** SNI the client sent (server side) or the name we sent (client side); null when none. */
  sni: string | null;
  /** ALPN protocol agreed, or null. */
  alpn: string | null;
}

/** Inbound listener TLS levels (ARCHITECTURE.md "TLS levels"). */
export const LISTENER_TLS_LEVELS = ['none', 'may', 'encrypt', 'implicit'] as const;
export type ListenerTlsLevel = (typeof LISTENER_TLS_LEVELS)[number];

/** RFC 3848 protocol names used in Received headers. */
export type ReceivedProtocol = 'SMTP' | 'ESMTP' | 'ESMTPS' | 'ESMTPA' | 'ESMTPSA';

/** A message the server has read completely and wants stored durably. */
export interface IncomingMessage {
  /** Queue id chosen by the session (it is named in the Received header); the store keeps it. */
  id: string;
  /** Reverse path without brackets; '' is the null sender. */
  mailFrom: string;
  /** Recipients delivered to local mailboxes (addresses as given in RCPT, lower-cased domain). */
  localRecipients: string[];
  /** Recipients for other domains: they go to the outbound queue (authenticated submission only). */
  remoteRecipients: string[];
  /**
   * The final local mailboxes after the address table (aliases, sub-addressing, catch-alls;
   * store/resolve.ts). Absent: the mailboxes are localRecipients (library callers without a table).
   * localRecipients/remoteRecipients stay the envelope as the client gave it (messages.recipients).
   */
  mailboxes?: readonly string[];
  /**
   * External targets of local aliases (forwarding): external target → the local address it was
   * expanded from. Each is queued for remote delivery like a remote recipient.
   */
  forwardedFrom?: Readonly<Record<string, string>>;
  /**
   * Final local mailboxes handed to a delivery target other than the built-in store (issue 12):
   * each gets a queue row carrying the target spec text (QueueEntry.target), and NO mailbox
   * entry; the queue runner delivers it. Mailboxes not named here keep their mailbox entry.
   * A handoff's NOTIFY/ORCPT is recipientDsn[mailbox]. Absent or []: every mailbox is the store's.
   */
  handoffs?: ReadonlyArray<{ mailbox: string; target: string }>;
  /**
   * The whole message as stored: our Received header first, then the bytes the client sent
   * (unstuffed). The server hands it over as a list of pieces (views into the received buffers,
   * so a big message is not copied once more just to be joined); the store joins them as it
   * copies them into its batch. A single Uint8Array is accepted too.
   */
  data: Uint8Array | readonly Uint8Array[];
  /**
   * A large message's content, already fsync'd in the store's spool directory (store/spool.ts):
   * then `data` holds only our Received header, and the content is the file.
   */
  spooled?: { file: string; size: number } | null;
  receivedAt: Date;
  /** Listener name ('mx', 'submission', 'submissions'). */
  listener: string;
  clientAddress: string;
  heloName: string;
  authUser: string | null;
  tls: TlsFacts | null;
  /** RFC 8689 REQUIRETLS given on MAIL. */
  requireTls: boolean;
  /** MAIL parameters worth keeping: BODY=, SMTPUTF8, ENVID, RET. */
  body: '7BIT' | '8BITMIME' | 'BINARYMIME' | null;
  smtpUtf8: boolean;
  envId: string | null;
  ret: 'FULL' | 'HDRS' | null;
  /** RFC 3461 NOTIFY/ORCPT per recipient (only those that gave either); absent = none. */
  recipientDsn?: Readonly<Record<string, RecipientDsn>>;
  /** Received-mail verification verdicts (mx listener); absent or null: not verified. */
  authResults?: AuthVerdicts | null;
  /** DMARC asked for quarantine (RFC 7489 §6.3 p=quarantine) and the message failed. */
  quarantine?: boolean;
  /** The session pipelined commands before this message (RFC 2920); absent: not known (generated mail). */
  pipelined?: boolean;
}

/** Verdicts of received-mail authentication (auth/verify.ts), stored with the message. */
export interface AuthVerdicts {
  /** RFC 7208: pass|fail|softfail|neutral|none|temperror|permerror. */
  spf: { result: string; domain: string | null; comment: string | null };
  /** RFC 6376: one per verified signature, in header order. */
  dkim: Array<{ result: string; domain: string | null; selector: string | null; aligned: string | null; comment: string | null }>;
  /** Signatures past the verification bound, not checked. */
  dkimOmitted: number;
  /** RFC 7489: the result, the author domain and the policy that applies to it. */
  dmarc: { result: string; domain: string | null; policy: string | null; comment: string | null };
  /** RFC 8617 chain validation: pass|fail|none|temperror. */
  arc: { result: string; comment: string | null };
}

export interface MessageSummary {
  id: string;
  receivedAt: string;
  mailFrom: string;
  recipients: string[];
  size: number;
  listener: string;
  clientAddress: string;
  heloName: string;
  authUser: string | null;
  tls: TlsFacts | null;
  requireTls: boolean;
  /** Received-mail verification verdicts; null: not verified (submission, spooled, off, older mail). */
  authResults: AuthVerdicts | null;
  /** DMARC p=quarantine failed (auth.dmarcEnforce). */
  quarantine: boolean;
}

/** The TLS outcome of one outbound delivery attempt (recorded for every attempt). */
export interface TlsOutcome {
  /** Host connected to (MX name or route). */
  host: string | null;
  /** Level the policy asked for: none|may|encrypt|verify. */
  levelAsked: string;
  /** What the session achieved: none|encrypt|verify. */
  levelReached: string;
  protocol: string | null;
  cipher: string | null;
  verified: boolean;
  /** Why TLS was not used or not verified, when it was not. */
  whyNot: string | null;
}

/** DSN NOTIFY keywords (RFC 3461 §4.1). */
export type Notify = 'NEVER' | 'SUCCESS' | 'FAILURE' | 'DELAY';

/** Per-recipient DSN request as given on RCPT (RFC 3461 §4.1, §4.2). */
export interface RecipientDsn {
  /** null when no NOTIFY was given (the default: failure DSNs, RFC 3461 §4.1). */
  notify: readonly Notify[] | null;
  /** ORCPT as `addr-type;address` with the address decoded, or null. */
  orcpt: string | null;
}
