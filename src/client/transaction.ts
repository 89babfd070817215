/**
 * One mail transaction on an SmtpClient: MAIL, RCPTs and the content (DATA with dot-stuffing, or
 * BDAT), with RFC 2920 pipelining when the server offers it.
 *
 * Invariants:
 * - every argument is checked (CRLF_INJECTION / INVALID_ARGUMENT) and the content's line endings
 *   fixed or refused before the first byte of the transaction is written;
 * - extensions (SIZE, 8BITMIME, SMTPUTF8, REQUIRETLS, CHUNKING, PIPELINING) are read from the
 *   capabilities of *this* client, i.e. the post-TLS EHLO when TLS is on;
 * - with PIPELINING, MAIL and all RCPTs leave in one write and DATA only after their replies
 *   (RFC 2920 §3.1: DATA would be the last command of a group; we wait so an all-rejected
 *   envelope never sends content);
 * - content is sent only when at least one recipient was accepted; per-recipient replies are kept.
 */
import { dotStuff } from '../protocol/data.js';
import { has, sizeLimit, type Capabilities } from '../protocol/ehlo.js';
import { replyText, type Reply } from '../protocol/reply.js';
import { SmtpClientError } from './errors.js';
import { checkMailbox, checkParam, has8bit, isAscii, prepareContent, type BareLineEndings } from './message.js';
import type { TimeoutName } from './options.js';
import type { TlsSessionInfo } from './tls-session.js';
import type { Transcript } from './transcript.js';
import { WRITE_PIECE } from '../transport/client-connection.js';

/**
 * What a transaction needs of the client: TransactionChannel has these members, and this module does not
 * import client.ts back (client.ts calls sendTransaction).
 */
export interface TransactionChannel {
  readonly phase: 'plaintext' | 'tls';
  readonly transcript: Transcript;
  readonly tls: TlsSessionInfo | null;
  readReply(timeout: TimeoutName, what: string): Promise<Reply>;
  writeLines(lines: string[], timeout: TimeoutName, shown?: string[]): Promise<void>;
  writeBytes(bytes: Uint8Array, timeout: TimeoutName): Promise<void>;
  command(line: string, timeout: TimeoutName, shown?: string): Promise<Reply>;
  rset(): Promise<Reply>;
}

export interface SendEnvelope {
  /** Reverse path without brackets; '' is the null sender. */
  from: string;
  to: string[];
  /** Extra MAIL parameters (`ENVID=x`, `RET=HDRS`); SIZE/BODY/SMTPUTF8/REQUIRETLS are added here. */
  mailParams?: string[];
  /** Extra RCPT parameters, for every recipient (`NOTIFY=NEVER`). */
  rcptParams?: string[];
  /** RFC 8689: ask every hop for TLS; refused when the server does not offer REQUIRETLS in TLS. */
  requireTls?: boolean;
  /**
   * RFC 3461 parameters (RET=/ENVID= on MAIL; NOTIFY=/ORCPT= per recipient), sent only when the
   * server offers DSN; otherwise left out and the result says so (the caller then reports itself).
   */
  dsn?: { mailParams: string[]; rcptParams: Readonly<Record<string, string[]>> };
}

export interface SendOptions {
  /** Bare CR or LF in the content: refuse (default) or convert to CRLF. */
  bareLineEndings?: BareLineEndings;
  /** Use BDAT (RFC 3030) when CHUNKING is offered. Default false (DATA). */
  chunking?: boolean;
  /** BDAT chunk size in octets (default 1 MiB). */
  chunkSize?: number;
  /**
   * Called just before the first octet of content (or the BDAT command carrying it) is written:
   * until then a lost connection cannot have delivered the message (deliverBatch retries it on a
   * new connection; after it, the outcome is unknown and the message is deferred).
   */
  onContent?: () => void;
  /**
   * LMTP (RFC 2033 §4.2): after the end of data, read one reply per accepted recipient, in RCPT
   * order, into RecipientResult.dataReply (and `delivered` per recipient). Content goes by DATA.
   */
  lmtp?: boolean;
  /**
   * LMTP: called with each recipient's end-of-data reply as it is read, so a caller whose
   * connection breaks before the last one still knows the recipients already answered.
   */
  onRecipientData?: (address: string, reply: Reply) => void;
}

export interface RecipientResult {
  address: string;
  /** The RCPT reply; for recipients never tried (MAIL refused) the MAIL reply. */
  reply: Reply;
  /** RCPT accepted (2xx). Delivered means accepted *and* the final content reply was 2xx. */
  accepted: boolean;
  delivered: boolean;
  /** LMTP: this recipient's own reply to the end of data (or the refusal of DATA); else absent. */
  dataReply?: Reply;
}

export interface TransactionResult {
  mail: Reply;
  recipients: RecipientResult[];
  /** Reply to the end of data (final dot or BDAT LAST), or the 354-stage refusal; null if not sent. */
  data: Reply | null;
  /** Addresses the server took responsibility for. */
  delivered: string[];
  method: 'DATA' | 'BDAT';
  pipelined: boolean;
  /** The DSN parameters of the envelope were sent (the server offers DSN, RFC 3461 §4.1). */
  dsnPassed: boolean;
}


export async function sendTransaction(client: TransactionChannel, caps: Capabilities, env: SendEnvelope, content: Uint8Array | string, options: SendOptions): Promise<TransactionResult> {
  // 1. Arguments first: nothing is written when one of them would break the command line.
  checkMailbox(env.from, 'sender', true);
  if (env.to.length === 0) throw new SmtpClientError('INVALID_ARGUMENT', 'no recipients');
  for (const to of env.to) checkMailbox(to, 'recipient');
  const dsnRcpt = (to: string): string[] => (env.dsn && Object.hasOwn(env.dsn.rcptParams, to) ? env.dsn.rcptParams[to] ?? [] : []);
  for (const p of [...(env.mailParams ?? []), ...(env.rcptParams ?? []), ...(env.dsn?.mailParams ?? []), ...env.to.flatMap(dsnRcpt)]) checkParam(p);
  const bytes = prepareContent(content, options.bareLineEndings ?? 'reject');

  // 2. Extensions, from this client's EHLO only.
  const mailParams: string[] = [];
  const limit = sizeLimit(caps);
  if (limit !== null) {
    // RFC 1870 §6: do not send a message the server already said it will refuse.
    if (limit > 0 && bytes.length > limit) throw new SmtpClientError('MESSAGE_TOO_BIG', `message is ${bytes.length} octets; the server accepts at most ${limit}`);
    mailParams.push(`SIZE=${bytes.length}`);
  }
  if (has8bit(bytes)) {
    // RFC 6152 §3: 8-bit content only to a server that offers 8BITMIME.
    if (!has(caps, '8BITMIME')) throw new SmtpClientError('NOT_SUPPORTED', 'message has 8-bit content and the server does not offer 8BITMIME');
    mailParams.push('BODY=8BITMIME');
  }
  if (![env.from, ...env.to].every(isAscii)) {
    // RFC 6531 §3.4: UTF-8 addresses need SMTPUTF8 on MAIL, and only if offered.
    if (!has(caps, 'SMTPUTF8')) throw new SmtpClientError('NOT_SUPPORTED', 'a UTF-8 address needs SMTPUTF8 and the server does not offer it');
    mailParams.push('SMTPUTF8');
  }
  if (env.requireTls === true) {
    // RFC 8689 §4.2.1: REQUIRETLS only inside TLS and only when the server offers it.
    if (client.tls === null || !has(caps, 'REQUIRETLS')) throw new SmtpClientError('REQUIRETLS_NOT_SUPPORTED', 'REQUIRETLS asked for and not offered inside TLS by the server');
    mailParams.push('REQUIRETLS');
  }
  mailParams.push(...(env.mailParams ?? []));
  // RFC 3461 §4.1: DSN parameters go only to a server that offers DSN.
  const dsnPassed = env.dsn !== undefined && has(caps, 'DSN');
  if (dsnPassed) mailParams.push(...(env.dsn?.mailParams ?? []));
  const rcptParams = env.rcptParams ?? [];
  const useBdat = options.lmtp !== true && options.chunking === true && has(caps, 'CHUNKING');
  const pipelined = has(caps, 'PIPELINING');

  // 3. Envelope.
  const mailLine = ['MAIL FROM:<' + env.from + '>', ...mailParams].join(' ');
  const rcptLines = env.to.map((to) => ['RCPT TO:<' + to + '>', ...rcptParams, ...(dsnPassed ? dsnRcpt(to) : [])].join(' '));
  let mail: Reply;
  const recipients: RecipientResult[] = [];
  if (pipelined) {
    // RFC 2920 §3.1: MAIL and RCPT may be grouped; one write, then the replies in order.
    await client.writeLines([mailLine, ...rcptLines], 'mailMs');
    mail = await client.readReply('mailMs', 'MAIL');
    for (const to of env.to) {
      const r = await client.readReply('rcptMs', 'RCPT');
      const ok = mail.code === 250 && r.code >= 200 && r.code < 300;
      recipients.push({ address: to, reply: r, accepted: ok, delivered: false });
    }
  } else {
    mail = await client.command(mailLine, 'mailMs');
    if (mail.code === 250) {
      for (let i = 0; i < env.to.length; i++) {
        const r = await client.command(rcptLines[i] ?? '', 'rcptMs');
        recipients.push({ address: env.to[i] ?? '', reply: r, accepted: r.code >= 200 && r.code < 300, delivered: false });
      }
    } else {
      for (const to of env.to) recipients.push({ address: to, reply: mail, accepted: false, delivered: false });
    }
  }
  const method = useBdat ? 'BDAT' : 'DATA';
  if (mail.code !== 250 || !recipients.some((r) => r.accepted)) {
    if (mail.code === 250) await client.rset().catch(() => undefined);
    return { mail, recipients, data: null, delivered: [], method, pipelined, dsnPassed };
  }

  // 4. Content.
  if (options.lmtp === true) {
    const accepted = recipients.filter((r) => r.accepted);
    const first = await sendData(client, bytes, options.onContent, accepted, options.onRecipientData);
    for (const r of recipients) r.delivered = r.accepted && r.dataReply !== undefined && r.dataReply.code >= 200 && r.dataReply.code < 300;
    return { mail, recipients, data: first, delivered: recipients.filter((r) => r.delivered).map((r) => r.address), method, pipelined, dsnPassed };
  }
  const data = useBdat ? await sendBdat(client, bytes, options.chunkSize ?? 1024 * 1024, options.onContent) : await sendData(client, bytes, options.onContent);
  const ok = data.code >= 200 && data.code < 300;
  for (const r of recipients) r.delivered = ok && r.accepted;
  return { mail, recipients, data, delivered: recipients.filter((r) => r.delivered).map((r) => r.address), method, pipelined, dsnPassed };
}

/**
 * DATA. With `lmtp` (the accepted recipients), the end of data is answered once per recipient
 * (RFC 2033 §4.2), each reply stored on its recipient; the first one is returned. A refused DATA
 * is every accepted recipient's reply.
 */
async function sendData(
  client: TransactionChannel,
  bytes: Uint8Array,
  onContent?: () => void,
  lmtp?: RecipientResult[],
  onRecipientData?: (address: string, reply: Reply) => void,
): Promise<Reply> {
  const go = await client.command('DATA', 'dataInitMs');
  if (go.code !== 354) {
    for (const r of lmtp ?? []) r.dataReply = go;
    return go;
  }
  onContent?.();
  // RFC 5321 §4.5.2: dot-stuffing, and <CRLF>.<CRLF> as the only end of data.
  const parts = dotStuff(bytes);
  client.transcript.event(`[${bytes.length} octets of message content, dot-stuffed]`, client.phase);
  // Each piece waits for the one before to be taken (writeBytes: backpressure, transport.ts).
  for (const chunk of coalesce(parts)) await client.writeBytes(chunk, 'dataBlockMs');
  client.transcript.sent('.', client.phase);
  if (lmtp === undefined) return client.readReply('dataFinalMs', 'end of data');
  // RFC 2033 §4.2: one reply for each successful RCPT, in the order of the RCPT commands; each
  // with the full DATA-termination deadline (a delivery agent may deliver them one by one).
  let first: Reply | null = null;
  for (const r of lmtp) {
    const reply = await client.readReply('dataFinalMs', `end of data (for ${r.address})`);
    r.dataReply = reply;
    first ??= reply;
    onRecipientData?.(r.address, reply);
  }
  return first ?? (await client.readReply('dataFinalMs', 'end of data'));
}

/**
 * RFC 3030 §2: BDAT n [LAST] followed by exactly n octets, no dot-stuffing. A chunk of any size
 * leaves in WRITE_PIECE pieces with backpressure (writeBytes), never as one write.
 */
async function sendBdat(client: TransactionChannel, bytes: Uint8Array, chunkSize: number, onContent?: () => void): Promise<Reply> {
  onContent?.();
  const size = Math.max(1, chunkSize);
  let off = 0;
  for (;;) {
    const end = Math.min(bytes.length, off + size);
    const last = end >= bytes.length;
    const header = `BDAT ${end - off}${last ? ' LAST' : ''}`;
    await client.writeLines([header], 'dataBlockMs');
    client.transcript.event(`[${end - off} octets of message content]`, client.phase);
    await client.writeBytes(bytes.subarray(off, end), 'dataBlockMs');
    const r = await client.readReply(last ? 'dataFinalMs' : 'dataBlockMs', header);
    if (last || r.code !== 250) return r;
    off = end;
  }
}

/** Joins the many small dot-stuffing slices into writes of about WRITE_PIECE octets. */
function* coalesce(parts: Uint8Array[]): Generator<Uint8Array> {
  let pending: Uint8Array[] = [];
  let n = 0;
  for (const p of parts) {
    pending.push(p);
    n += p.length;
    if (n >= WRITE_PIECE) {
      yield Buffer.concat(pending);
      pending = [];
      n = 0;
    }
  }
  if (n > 0) yield Buffer.concat(pending);
}

export function describeTransaction(r: TransactionResult): string {
  if (r.mail.code !== 250) return `MAIL refused: ${replyText(r.mail)}`;
  if (r.data === null) return 'no recipient accepted';
  return `${r.method}: ${replyText(r.data)}`;
}
