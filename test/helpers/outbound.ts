/**
 * Put a message in a store's outbound queue as authenticated submission would (remote
 * recipients only), for queue-runner tests and the outbound benchmark.
 */
import { newMessageId, type Store } from '../../src/store/index.js';

export interface OutboundMessage {
  from: string;
  to: string[];
  data: Uint8Array;
  receivedAt?: Date;
  requireTls?: boolean;
}

export async function queueOutbound(store: Store, m: OutboundMessage): Promise<string> {
  const { id } = await store.accept({
    id: newMessageId(),
    mailFrom: m.from,
    localRecipients: [],
    remoteRecipients: m.to,
    data: m.data,
    receivedAt: m.receivedAt ?? new Date(),
    listener: 'submission',
    clientAddress: '127.0.0.1',
    heloName: 'client',
    authUser: m.from === '' ? null : m.from,
    tls: null,
    requireTls: m.requireTls ?? false,
    body: null,
    smtpUtf8: false,
    envId: null,
    ret: null,
  });
  return id;
}
