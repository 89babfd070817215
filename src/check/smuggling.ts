/**
 * Opt-in SMTP smuggling probe (CVE-2023-51764/51765/51766 class). SENDS REAL MAIL: one short test
 * message per end-of-data variant, to the address the user named (--probe smuggling --rcpt).
 *
 * Per variant V, on its own connection (inside TLS when the server offers it): MAIL, RCPT, DATA,
 * then in one write: headers, "body", V, the marker command "NOOP\r\n", ".\r\n"; then QUIT.
 * The marker decides, not the server's answer to leftovers (Postfix drops a lone "." left after
 * <CRLF>.<CR><CRLF> without a reply): if V ended the data, NOOP is a command and gets its own
 * reply; if not, NOOP is a line of the message and "NOOP\r\n.\r\n" ends it. Servers answer in
 * order (RFC 2920 §3.1), so the replies before the 221:
 * - exactly one 2xx: only <CRLF>.<CRLF> ended the data (RFC 5321 §4.1.1.4), V was content;
 * - a 2xx and then more (the marker's reply at least): V ended the data;
 * - a 4xx/5xx first: the server refused the message (bare CR/LF rejected: the safe answer).
 * A transaction the server's policy refuses (MAIL/RCPT/DATA answered 4xx/5xx, e.g. 530 AUTH
 * required) is 'inconclusive': the variant could not be tried.
 */
import { replyText, type Reply } from '../protocol/reply.js';
import { ProbeConnection } from './conn.js';
import { ehloArgument, printable, startTls, tlsOptions, type CheckContext } from './probe-setup.js';
import type { SmugglingResult } from './types.js';

export const SMUGGLING_VARIANTS: ReadonlyArray<{ name: string; bytes: string }> = [
  { name: '<LF>.<LF>', bytes: '\n.\n' },
  { name: '<LF>.<CRLF>', bytes: '\n.\r\n' },
  { name: '<CRLF>.<LF>', bytes: '\r\n.\n' },
  { name: '<CR>.<CR>', bytes: '\r.\r' },
  { name: '<CR>.<CRLF>', bytes: '\r.\r\n' },
  { name: '<CRLF>.<CR>', bytes: '\r\n.\r' },
  // Ends DATA on Debian's Postfix 3.7 (the line ".\r" read as "."), whose lone "." left over gets no reply.
  { name: '<CRLF>.<CR><CRLF>', bytes: '\r\n.\r\r\n' },
];

/** Sent right after the variant: a command if the variant ended the data, a message line if not. */
const MARKER = 'NOOP';

function safeAddress(a: string): boolean {
  // One mailbox, no CR/LF/brackets/spaces: it goes into MAIL/RCPT verbatim.
  return /^[^\s<>\r\n@]+@[^\s<>\r\n@]+$/.test(a);
}

async function oneVariant(ctx: CheckContext, useTls: boolean, from: string, rcpt: string, v: { name: string; bytes: string }): Promise<SmugglingResult> {
  let conn: ProbeConnection | null = null;
  const fail = (evidence: string): SmugglingResult => ({ variant: v.name, outcome: 'error', evidence });
  const blocked = (evidence: string): SmugglingResult => ({ variant: v.name, outcome: 'inconclusive', evidence: `${evidence}: blocked by the server's policy, the variant was not tried` });
  try {
    conn = await ProbeConnection.open(ctx.target, { timeoutMs: ctx.timeoutMs, implicitTls: ctx.implicit ? tlsOptions(ctx) : undefined });
    const c = conn;
    const expect = async (line: string | null, code: number): Promise<Reply> => {
      const r = line === null ? await c.readReply() : await c.command(line);
      if (r.code !== code) throw new Error(`${line ?? 'greeting'} answered ${replyText(r)}`);
      return r;
    };
    await expect(null, 220);
    await expect(`EHLO ${ehloArgument(ctx, c)}`, 250);
    if (useTls && !ctx.implicit) {
      const st = await startTls(ctx, c);
      if (!st.ok) return fail(st.stage === 'starttls' ? `STARTTLS answered ${replyText(st.reply)}` : `TLS handshake failed: ${st.error}`);
      if (st.ehlo?.code !== 250) return fail(`EHLO inside TLS answered ${st.ehlo ? replyText(st.ehlo) : '(nothing)'}`);
    }
    const mailReply = await c.command(`MAIL FROM:<${from}>`);
    if (mailReply.code !== 250) return blocked(`MAIL answered ${replyText(mailReply)}`);
    const rcptReply = await c.command(`RCPT TO:<${rcpt}>`);
    if (rcptReply.code !== 250 && rcptReply.code !== 251) return blocked(`RCPT answered ${replyText(rcptReply)}`);
    const dataReply = await c.command('DATA');
    if (dataReply.code !== 354) return blocked(`DATA answered ${replyText(dataReply)}`);
    const msg =
      `From: <${from}>\r\nTo: <${rcpt}>\r\nSubject: postseal check: SMTP smuggling probe ${v.name}\r\n` +
      `Date: ${new Date().toUTCString()}\r\n\r\nThis is a test message from postseal check (end-of-data variant ${v.name}).\r\nbody` +
      v.bytes + `${MARKER}\r\n.\r\n`;
    c.sendRaw(msg, `message ending with ${printable(Buffer.from(v.bytes, 'latin1'))} then the marker ${MARKER}\\r\\n then .\\r\\n`);
    c.send('QUIT');
    const replies: Reply[] = [];
    for (let i = 0; i < 6; i++) {
      let r: Reply;
      try {
        r = await c.readReply();
      } catch {
        break;
      }
      replies.push(r);
      if (r.code === 221) break;
    }
    const codes = replies.map((r) => r.code);
    const evidence = `replies after the message: ${replies.map(replyText).join(' | ') || '(none)'}`;
    const first = codes[0];
    if (first === undefined) return { variant: v.name, outcome: 'error', evidence };
    if (first >= 400) return { variant: v.name, outcome: 'rejected', evidence };
    const beforeQuit = codes.filter((x) => x !== 221).length;
    return { variant: v.name, outcome: beforeQuit > 1 ? 'end-of-data' : 'not-end-of-data', evidence };
  } catch (e) {
    return fail(e instanceof Error ? e.message : String(e));
  } finally {
    conn?.close();
  }
}

export async function probeSmuggling(ctx: CheckContext, useTls: boolean, opts: { rcpt: string; from?: string }): Promise<SmugglingResult[]> {
  const from = opts.from ?? opts.rcpt;
  if (!safeAddress(opts.rcpt) || !safeAddress(from)) {
    return [{ variant: '*', outcome: 'error', evidence: 'refusing an address with spaces, brackets or line breaks' }];
  }
  const out: SmugglingResult[] = [];
  for (const v of SMUGGLING_VARIANTS) out.push(await oneVariant(ctx, useTls, from, opts.rcpt, v));
  return out;
}
