/**
 * The write operations the group committer hands the writer, and the writer's answers.
 *
 * Invariants: an accept op carries its bytes as (offset, length) into the batch's single
 * ArrayBuffer; every op of a batch gets exactly one OpResult, in order; a batch is either
 * committed as a whole (per-op failures rolled back to their own savepoint) or reported 'failed'.
 */
import type { ErrorCode } from '../errors.js';
import type { QueueRow } from './rows.js';
import type { StoredMtaStsPolicy } from './types.js';
import type { TlsRptOpValues, TlsRptWriteOp } from './tlsrpt.js';
import type { AliasOpValues, AliasWriteOp } from './aliases.js';
import type { TokenOpValues, TokenWriteOp } from './tokens.js';

/** Envelope and metadata of one message, already normalized, as the writer stores it. */
export interface MessageRecord {
  id: string;
  receivedAt: string;
  mailFrom: string;
  /** The envelope as accepted (messages.recipients): local and remote RCPTs as given. */
  localRecipients: string[];
  remoteRecipients: string[];
  /** Final local mailboxes (mailbox_entries), after the address table. */
  mailboxes: string[];
  /** External alias targets queued besides remoteRecipients (not part of the envelope). */
  forwards: string[];
  /** Local mailboxes queued for a delivery target (queue.target), not in mailbox_entries. */
  handoffs: Array<{ mailbox: string; target: string }>;
  listener: string;
  clientAddress: string;
  heloName: string;
  authUser: string | null;
  tlsJson: string | null;
  requireTls: boolean;
  body: string | null;
  smtpUtf8: boolean;
  envId: string | null;
  ret: string | null;
  /** RFC 3461 NOTIFY (comma list) and ORCPT per recipient that gave either. */
  recipientDsn: Record<string, { notify: string | null; orcpt: string | null }>;
  /** JSON AuthVerdicts of received-mail verification, or null. */
  authResultsJson: string | null;
  quarantine: boolean;
  /** The spool file holding the content (store/spool.ts), or null when the bytes are inline. */
  file: string | null;
  /** Bytes in that file (0 without one). */
  fileSize: number;
}

export type WriteOp =
  | { kind: 'accept'; msg: MessageRecord; offset: number; length: number; nowMs: number }
  | { kind: 'addUser'; address: string; hash: string; createdAt: string; senders: string[]; admin?: boolean }
  | { kind: 'editSenders'; address: string; add: string[]; remove: string[] }
  | { kind: 'setPassword'; address: string; hash: string }
  | { kind: 'removeUser'; address: string }
  | { kind: 'claimDue'; nowMs: number; limit: number; leaseMs: number; which: 'remote' | 'local' | null; node: string }
  | { kind: 'renewLeases'; rows: Array<{ id: string; recipient: string }>; nowMs: number; leaseMs: number; node: string }
  | {
      kind: 'recordAttempt';
      id: string;
      recipient: string;
      status: 'delivered' | 'deferred' | 'failed';
      error: string | null;
      tlsJson: string | null;
      nextAttemptAt: number | null;
      nowMs: number;
      node: string;
    }
  | { kind: 'deleteQueued'; id: string; recipient: string | null }
  | { kind: 'retryQueued'; id: string | null; nowMs: number }
  | { kind: 'releaseLeases' }
  | { kind: 'putMtaSts'; policy: StoredMtaStsPolicy }
  | { kind: 'forgetMtaSts'; domain: string }
  | TlsRptWriteOp
  | AliasWriteOp
  | TokenWriteOp;

export type OpKind = WriteOp['kind'];

/** What each op resolves to. */
export interface OpValues extends TlsRptOpValues, AliasOpValues, TokenOpValues {
  accept: null;
  addUser: null;
  /** False when there is no such user. */
  editSenders: boolean;
  setPassword: boolean;
  removeUser: boolean;
  claimDue: QueueRow[];
  renewLeases: number;
  recordAttempt: boolean;
  deleteQueued: number;
  retryQueued: number;
  releaseLeases: number;
  putMtaSts: null;
  /** False when there was no cached policy. */
  forgetMtaSts: boolean;
}

export type OpResult = { ok: true; value: OpValues[OpKind] } | { ok: false; code: ErrorCode; message: string };

export function byteLength(op: WriteOp): number {
  return op.kind === 'accept' ? op.length : 0;
}
