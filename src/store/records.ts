/**
 * The checks and normalizations every Store implementation applies before a write reaches its
 * writer: the message record accept() commits, passwords, sender patterns. Pure (no database), so
 * SQLite and PostgreSQL accept and refuse exactly the same input with the same codes.
 *
 * Invariants: local addresses are normalized (lower-cased); remote ones keep their local part as
 * given (it may be case-sensitive there, RFC 5321 §2.4) with the domain lower-cased; a message
 * without any recipient is refused (STORE_NO_RECIPIENTS); a message id is either the session's
 * (checked) or a fresh one.
 */
import type { IncomingMessage } from '../types.js';
import { PostsealError } from '../errors.js';
import { domainOf, isSenderPattern, normalizeAddress } from './address.js';
import { newMessageId } from './ids.js';
import type { MessageRecord } from './writer-protocol.js';

export const MAX_PASSWORD = 1024;

/** Remote recipients keep their local part as given (it may be case-sensitive there). */
export function remoteRecipient(address: string): string {
  normalizeAddress(address); // validation only
  const a = address.trim();
  const at = a.lastIndexOf('@');
  if (at < 1 || at === a.length - 1) {
    throw new PostsealError('STORE_BAD_ADDRESS', `remote recipient needs local@domain: ${JSON.stringify(a.slice(0, 80))}`);
  }
  return a.slice(0, at + 1) + domainOf(a);
}

const GIVEN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * The session may choose the id itself (it names it in the Received header); otherwise the store
 * makes one. Works whether or not IncomingMessage declares `id`.
 */
export function messageId(msg: IncomingMessage, nowMs: number): string {
  const given: unknown = 'id' in msg ? msg.id : undefined;
  if (given === undefined || given === null || given === '') return newMessageId(nowMs);
  if (typeof given !== 'string' || !GIVEN_ID.test(given)) {
    throw new PostsealError('STORE_BAD_ID', `unusable message id ${JSON.stringify(String(given).slice(0, 80))}`);
  }
  return given;
}

export function dataLength(data: Uint8Array | readonly Uint8Array[]): number {
  if (data instanceof Uint8Array) return data.byteLength;
  let n = 0;
  for (const part of data) n += part.byteLength;
  return n;
}

export function checkPassword(password: string): void {
  if (password.length === 0 || password.length > MAX_PASSWORD) {
    throw new PostsealError('STORE_BAD_PASSWORD', `password must be 1 to ${MAX_PASSWORD} characters`);
  }
}

/** Sender patterns as stored: lower-cased, checked, without duplicates. */
export function checkSenders(patterns: readonly string[]): string[] {
  const out = new Set<string>();
  for (const raw of patterns) {
    const p = raw.trim().toLowerCase();
    if (!isSenderPattern(p)) {
      throw new PostsealError('STORE_BAD_SENDER', `not a sender pattern: ${JSON.stringify(raw.slice(0, 80))} (expected local@domain, *@domain or *)`);
    }
    out.add(p);
  }
  return [...out];
}

/**
 * The record accept() hands its writer: recipients normalized and split into mailboxes, remote
 * recipients, forwards and handoffs; STORE_NO_RECIPIENTS when nothing is left.
 */
export function messageRecord(msg: IncomingMessage, nowMs: number): MessageRecord {
  const local = [...new Set(msg.localRecipients.map(normalizeAddress))];
  const remote = [...new Set(msg.remoteRecipients.map(remoteRecipient))];
  // The address table's final targets (store/resolve.ts); without them, the envelope's local
  // recipients are the mailboxes (library callers, catch-all without a table).
  const finals = msg.mailboxes === undefined ? local : [...new Set(msg.mailboxes.map(normalizeAddress))];
  // Mailboxes handed to a delivery target get a queue row instead of a mailbox entry (first
  // target named wins for a mailbox; 'store' means the built-in mailbox, i.e. no handoff).
  const handoffs: Array<{ mailbox: string; target: string }> = [];
  const handed = new Set<string>();
  for (const h of msg.handoffs ?? []) {
    const mailbox = normalizeAddress(h.mailbox);
    const target = h.target.trim();
    if (target === 'store' || handed.has(mailbox)) continue;
    if (target === '') throw new PostsealError('STORE_BAD_HANDOFF', `handoff of ${mailbox}: the target is empty`);
    handed.add(mailbox);
    handoffs.push({ mailbox, target });
  }
  const mailboxes = finals.filter((m) => !handed.has(m));
  const forwards = [...new Set(Object.keys(msg.forwardedFrom ?? {}).map(remoteRecipient))].filter((f) => !remote.includes(f));
  if (mailboxes.length + remote.length + forwards.length + handoffs.length === 0) {
    throw new PostsealError('STORE_NO_RECIPIENTS', 'a message needs at least one recipient');
  }
  return {
    id: messageId(msg, nowMs),
    receivedAt: msg.receivedAt.toISOString(),
    mailFrom: msg.mailFrom,
    localRecipients: local,
    remoteRecipients: remote,
    mailboxes,
    forwards,
    handoffs,
    listener: msg.listener,
    clientAddress: msg.clientAddress,
    heloName: msg.heloName,
    authUser: msg.authUser,
    tlsJson: msg.tls === null ? null : JSON.stringify(msg.tls),
    requireTls: msg.requireTls,
    body: msg.body,
    smtpUtf8: msg.smtpUtf8,
    envId: msg.envId,
    ret: msg.ret,
    recipientDsn: Object.fromEntries(
      Object.entries(msg.recipientDsn ?? {}).map(([a, d]) => [a, { notify: d.notify?.join(',') ?? null, orcpt: d.orcpt }]),
    ),
    authResultsJson: msg.authResults ? JSON.stringify(msg.authResults) : null,
    quarantine: msg.quarantine === true,
    file: msg.spooled?.file ?? null,
    fileSize: msg.spooled?.size ?? 0,
  };
}
