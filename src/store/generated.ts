/**
 * Messages postseal writes itself (bounces, TLS-RPT reports): the IncomingMessage for the store,
 * with the envelope facts of a message that did not come over SMTP (no client, no TLS, listener
 * named after its origin). One constructor, so every generated message has the same shape.
 */
import type { IncomingMessage } from '../types.js';
import { newMessageId } from './ids.js';

export interface GeneratedMessage {
  /** 'bounce', 'tlsrpt', … — shown as the listener in `mailbox list` and logs. */
  origin: string;
  /** Envelope sender ('' for a bounce, RFC 5321 §4.5.5). */
  from: string;
  /** The recipient and whether it is local (mailbox) or remote (queue). */
  to: string;
  local: boolean;
  data: Uint8Array;
  /** The name we use for ourselves (HELO of the Received facts). */
  hostname: string;
  now?: Date;
}

export function generatedMessage(m: GeneratedMessage): IncomingMessage {
  const now = m.now ?? new Date();
  return {
    id: newMessageId(now.getTime()),
    mailFrom: m.from,
    localRecipients: m.local ? [m.to] : [],
    remoteRecipients: m.local ? [] : [m.to],
    data: m.data,
    receivedAt: now,
    listener: m.origin,
    clientAddress: '127.0.0.1',
    heloName: m.hostname,
    authUser: null,
    tls: null,
    requireTls: false,
    body: null,
    smtpUtf8: false,
    envId: null,
    ret: null,
  };
}

/**
 * Signs a generated message once, before it is stored (auth/dkim-own.ts, injected by serve):
 * returns the bytes to store (DKIM-Signature fields prepended, or the same bytes).
 */
export type GeneratedSigner = (data: Uint8Array) => Promise<Uint8Array>;

/** generatedMessage with its bytes signed first (no signer: unchanged). */
export async function signedGeneratedMessage(m: GeneratedMessage, sign: GeneratedSigner | null | undefined): Promise<IncomingMessage> {
  return generatedMessage(sign ? { ...m, data: await sign(m.data) } : m);
}
