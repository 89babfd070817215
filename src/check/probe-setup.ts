/**
 * Building blocks shared by the probes: the TLS options a check uses, greeting + EHLO, the
 * STARTTLS sequence (written once, here: startTls), and "get me to a TLS session" (STARTTLS or
 * implicit) with per-probe TLS settings.
 *
 * Invariants: certificates are never rejected during the handshake (rejectUnauthorized false) so
 * a bad certificate is *reported*, not a reason to stop; trust is judged afterwards from OpenSSL's
 * verify result against the system roots plus --ca; SNI is the checked host name unless it is an
 * IP literal (RFC 6066 §3) or the probe asks for none.
 */
import net from 'node:net';
import tls from 'node:tls';
import { PostsealError } from '../errors.js';
import { parseEhloReply } from '../protocol/ehlo.js';
import { replyText, type Reply } from '../protocol/reply.js';
import { ProbeConnection, type ProbeTarget } from './conn.js';
import type { ReplySummary, TranscriptEntry } from './types.js';

export interface CheckContext {
  target: ProbeTarget;
  implicit: boolean;
  timeoutMs: number;
  /** Extra trust anchors (PEM), added to the system roots. */
  ca: string[];
  /** EHLO argument; default: our own address literal (RFC 5321 §4.1.3). */
  ehloName: string | null;
}

export function summarizeReply(r: Reply): ReplySummary {
  return { code: r.code, text: replyText(r).slice(4) };
}

export function keywordsOf(r: Reply): Record<string, string[]> {
  return Object.fromEntries(parseEhloReply(r).keywords);
}

/** TLS options for a probe; `sni: false` sends no server name at all. */
export function tlsOptions(ctx: CheckContext, extra: tls.ConnectionOptions & { sni?: boolean } = {}): tls.ConnectionOptions {
  const { sni = true, ...rest } = extra;
  const opts: tls.ConnectionOptions = {
    ca: [...tls.rootCertificates, ...ctx.ca],
    // Judged after the handshake (see header): a checker must see bad certificates, not stop at them.
    rejectUnauthorized: false,
    // Node folds the host-name check into `authorized`; the checker reports trust and name
    // separately, so the name is checked afterwards (certificateFacts), not here.
    checkServerIdentity: () => undefined,
    ...rest,
  };
  // RFC 6066 §3: literal IP addresses are not permitted in SNI.
  if (sni && net.isIP(ctx.target.host) === 0) opts.servername = ctx.target.host;
  return opts;
}

/** EHLO argument: an address literal for our end of the connection (RFC 5321 §4.1.3). */
export function ehloArgument(ctx: CheckContext, conn: ProbeConnection): string {
  if (ctx.ehloName !== null) return ctx.ehloName;
  const local = conn.localAddress;
  if (local === null) return 'postseal-check.invalid';
  return net.isIPv6(local) ? `[IPv6:${local}]` : `[${local}]`;
}

export interface Greeted {
  conn: ProbeConnection;
  greeting: Reply;
  greetingMs: number;
  ehlo: Reply;
}

/** Connects, reads the greeting, sends EHLO. Throws PostsealError when any step fails. */
export async function connectAndEhlo(ctx: CheckContext, transcript?: TranscriptEntry[], implicitOptions?: tls.ConnectionOptions): Promise<Greeted> {
  const started = Date.now();
  const conn = await ProbeConnection.open(ctx.target, {
    timeoutMs: ctx.timeoutMs,
    implicitTls: ctx.implicit ? (implicitOptions ?? tlsOptions(ctx)) : undefined,
    transcript,
  });
  try {
    const greeting = await conn.readReply();
    const greetingMs = Date.now() - started;
    // RFC 5321 §4.2: 220 is the greeting; 554 means "no service here".
    if (greeting.code !== 220) throw new PostsealError('CHECK_GREETING', `greeting was not 220: ${replyText(greeting)}`);
    const ehlo = await conn.command(`EHLO ${ehloArgument(ctx, conn)}`);
    if (ehlo.code !== 250) throw new PostsealError('CHECK_EHLO', `EHLO refused: ${replyText(ehlo)}`);
    return { conn, greeting, greetingMs, ehlo };
  } catch (e) {
    conn.close();
    throw e;
  }
}

export interface StartTlsOptions {
  /** TLS options for the handshake; default tlsOptions(ctx). */
  tls?: tls.ConnectionOptions;
  /** Exact bytes to send instead of the plain "STARTTLS" line (injection probes), and their label. */
  raw?: { bytes: string; label: string };
  /** Send EHLO again inside TLS (RFC 3207 §4.2: the client must); default true. */
  ehlo?: boolean;
}

export type StartTlsOutcome =
  | {
      ok: true;
      /** The 220 to STARTTLS. */
      reply: Reply;
      /** Bytes that arrived with or after the 220, before TLS: never read as replies. */
      discarded: Buffer;
      socket: tls.TLSSocket;
      handshakeMs: number;
      /** The reply to EHLO inside TLS (any code), or null when not asked for. */
      ehlo: Reply | null;
    }
  | { ok: false; stage: 'starttls'; reply: Reply; discarded: Buffer }
  | { ok: false; stage: 'handshake'; reply: Reply; discarded: Buffer; error: string };

/**
 * The STARTTLS sequence of every probe, on a connection that has sent EHLO: STARTTLS (or the given
 * raw bytes), the 220, the upgrade (which hands back every byte already received as `discarded`:
 * RFC 3207 §4.2, they are never read as replies), then EHLO inside TLS. A refused STARTTLS or a
 * failed handshake is a value; a reply that does not come (timeout, closed) throws, as any read.
 */
export async function startTls(ctx: CheckContext, conn: ProbeConnection, opts: StartTlsOptions = {}): Promise<StartTlsOutcome> {
  if (opts.raw) conn.sendRaw(opts.raw.bytes, opts.raw.label);
  else conn.send('STARTTLS');
  const reply = await conn.readReply();
  if (reply.code !== 220) return { ok: false, stage: 'starttls', reply, discarded: Buffer.alloc(0) };
  conn.note('--- TLS upgrade ---');
  const up = await conn.upgrade(opts.tls ?? tlsOptions(ctx));
  if (!up.ok) return { ok: false, stage: 'handshake', reply, discarded: up.discarded, error: up.error };
  const ehlo = opts.ehlo === false ? null : await conn.command(`EHLO ${ehloArgument(ctx, conn)}`);
  return { ok: true, reply, discarded: up.discarded, socket: up.socket, handshakeMs: up.handshakeMs, ehlo };
}

export type TlsSession =
  | { ok: true; conn: ProbeConnection; socket: tls.TLSSocket; handshakeMs: number }
  | { ok: false; stage: 'connect' | 'starttls' | 'handshake'; error: string };

/**
 * Reaches TLS with the given TLS options (implicit: from the first byte; else EHLO, STARTTLS).
 * Failures before the handshake come back as stage 'connect'/'starttls'; a refused handshake as
 * 'handshake' (that is what version and cipher probes measure).
 */
export async function reachTls(ctx: CheckContext, options: tls.ConnectionOptions): Promise<TlsSession> {
  if (ctx.implicit) {
    const started = Date.now();
    try {
      const conn = await ProbeConnection.open(ctx.target, { timeoutMs: ctx.timeoutMs, implicitTls: options });
      const socket = conn.tlsSocket;
      if (socket === null) throw new PostsealError('CHECK_TLS', 'no TLS socket');
      return { ok: true, conn, socket, handshakeMs: Date.now() - started };
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      // A refused implicit handshake is a connect error whose cause the transport marked.
      const cause = e instanceof Error ? e.cause : undefined;
      const refused = cause instanceof PostsealError && cause.code === 'TLS_HANDSHAKE_FAILED';
      return { ok: false, stage: refused ? 'handshake' : 'connect', error: msg };
    }
  }
  let greeted: Greeted;
  try {
    greeted = await connectAndEhlo(ctx);
  } catch (e) {
    return { ok: false, stage: 'connect', error: e instanceof Error ? e.message : String(e) };
  }
  const { conn } = greeted;
  let st: StartTlsOutcome;
  try {
    st = await startTls(ctx, conn, { tls: options, ehlo: false });
  } catch (e) {
    conn.close();
    return { ok: false, stage: 'starttls', error: e instanceof Error ? e.message : String(e) };
  }
  if (!st.ok) {
    conn.close();
    return st.stage === 'starttls' ? { ok: false, stage: 'starttls', error: replyText(st.reply) } : { ok: false, stage: 'handshake', error: st.error };
  }
  return { ok: true, conn, socket: st.socket, handshakeMs: st.handshakeMs };
}

/** Printable form of raw bytes: CR/LF and controls escaped, capped. */
export function printable(b: Buffer, max = 400): string {
  const s = b.subarray(0, max).toString('latin1');
  const esc = s.replace(/[\x00-\x1f\x7f-\xff]/g, (c) => {
    if (c === '\r') return '\\r';
    if (c === '\n') return '\\n';
    return '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0');
  });
  return b.length > max ? `${esc}… (${b.length} bytes)` : esc;
}
