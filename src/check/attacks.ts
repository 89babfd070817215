/**
 * Attack probes that send no mail: STARTTLS command injection (whole and partial line) and state
 * kept across STARTTLS. Each runs on its own connection and returns an outcome with evidence.
 *
 * How each verdict is reached without timing (servers answer commands in order, RFC 5321 §4.1,
 * RFC 2920 §3.1), so the first reply read inside TLS tells what the server did:
 * - whole line: plaintext "STARTTLS\r\nNOOP\r\n" in one segment, then QUIT inside TLS. A first reply
 *   of 221 means NOOP was thrown away; anything else is the reply to the injected NOOP
 *   (CVE-2011-0411 class).
 * - partial line: plaintext "STARTTLS\r\nNO", then "OP\r\nOP\r\nQUIT\r\n" inside TLS. A 250 then a
 *   refusal of the second (always unknown) "OP" means the plaintext "NO" was glued to the TLS "OP"
 *   (the buffer was not purged); 500/502 for the first "OP" means it was purged; 250 to both means
 *   the server answers 250 to anything: inconclusive, never "executed".
 * - a probe blocked by the server's policy (MAIL answered 530 before TLS) is 'inconclusive'.
 * - state: MAIL FROM:<> before STARTTLS; inside TLS, RCPT TO right after the handshake and again
 *   after a new EHLO: a 503 (no MAIL given / EHLO first) means the envelope was reset (RFC 3207
 *   §4.2); a 2xx to either means the plaintext MAIL is still in effect.
 */
import { replyText, type Reply } from '../protocol/reply.js';
import { connectAndEhlo, ehloArgument, printable, startTls, summarizeReply, type CheckContext } from './probe-setup.js';
import type { InjectionOutcome, ReplySummary, StateOutcome } from './types.js';

export interface InjectionResult {
  outcome: InjectionOutcome;
  evidence: string;
}

/** Judges the replies read inside TLS; `next` reads one more (pipelined) reply. */
type Judge = (first: Reply, next: () => Promise<Reply>) => Promise<InjectionResult>;

async function injection(ctx: CheckContext, before: string, after: string, beforeLabel: string, judge: Judge): Promise<InjectionResult> {
  let greeted;
  try {
    greeted = await connectAndEhlo(ctx);
  } catch (e) {
    return { outcome: 'not-tested', evidence: e instanceof Error ? e.message : String(e) };
  }
  const { conn } = greeted;
  try {
    const st = await startTls(ctx, conn, { raw: { bytes: before, label: beforeLabel }, ehlo: false });
    if (!st.ok && st.stage === 'starttls') return { outcome: 'not-tested', evidence: `STARTTLS answered ${replyText(st.reply)}` };
    if (st.discarded.length > 0) {
      // The server answered the injected command in plaintext, before TLS: it did not purge.
      return { outcome: 'executed', evidence: `reply in plaintext right after the 220: "${printable(st.discarded)}"` };
    }
    if (!st.ok) return { outcome: 'inconclusive', evidence: `TLS handshake failed: ${st.error}` };
    conn.sendRaw(after, printable(Buffer.from(after, 'latin1')));
    const first = await conn.readReply();
    return await judge(first, () => conn.readReply());
  } catch (e) {
    return { outcome: 'inconclusive', evidence: e instanceof Error ? e.message : String(e) };
  } finally {
    conn.close();
  }
}

export function probeInjectionWholeLine(ctx: CheckContext): Promise<InjectionResult> {
  return injection(ctx, 'STARTTLS\r\nNOOP\r\n', 'QUIT\r\n', 'STARTTLS\\r\\nNOOP\\r\\n (one segment)', async (first) => ({
    outcome: first.code === 221 ? 'discarded' : 'executed',
    evidence: `first reply inside TLS: ${replyText(first)}`,
  }));
}

export function probeInjectionPartialLine(ctx: CheckContext): Promise<InjectionResult> {
  // The second "OP" is always an unknown verb: its reply is the control that tells a joined
  // "NOOP" (250, then 500 for "OP") from a server that answers 250 to anything.
  return injection(ctx, 'STARTTLS\r\nNO', 'OP\r\nOP\r\nQUIT\r\n', 'STARTTLS\\r\\nNO (one segment, partial line)', async (first, next) => {
    const evidence = `first reply inside TLS: ${replyText(first)}`;
    if (first.code >= 500 || first.code === 221) return { outcome: 'discarded', evidence };
    if (first.code !== 250) return { outcome: 'inconclusive', evidence };
    const control = await next();
    const both = `${evidence}; the unknown verb OP then answered ${replyText(control)}`;
    if (control.code >= 200 && control.code < 300) return { outcome: 'inconclusive', evidence: `${both} (the server answers 250 to unknown verbs, so a 250 proves nothing)` };
    return { outcome: 'executed', evidence: both };
  });
}

export interface StateResult {
  outcome: StateOutcome;
  evidence: string;
  mailBeforeTls: ReplySummary | null;
}

// RFC 5321 §4.1.1.3 / §3.3: RCPT without a MAIL transaction is a sequence error (503).
function judgeRcpt(r: Reply): StateOutcome {
  if (r.code === 503) return 'reset';
  return r.code >= 200 && r.code < 300 ? 'kept' : 'inconclusive';
}

/** MAIL FROM before STARTTLS, RCPT after TLS + EHLO. Never reaches DATA: no mail is sent. */
export async function probeStateReset(ctx: CheckContext, rcptDomain: string): Promise<StateResult> {
  let greeted;
  try {
    greeted = await connectAndEhlo(ctx);
  } catch (e) {
    return { outcome: 'not-tested', evidence: e instanceof Error ? e.message : String(e), mailBeforeTls: null };
  }
  const { conn } = greeted;
  let mailBeforeTls: ReplySummary | null = null;
  try {
    const mail = await conn.command('MAIL FROM:<>');
    mailBeforeTls = summarizeReply(mail);
    // Blocked by the server's policy (e.g. 530 TLS required): say so, the probe could not decide.
    if (mail.code !== 250) return { outcome: 'inconclusive', evidence: `MAIL before TLS answered ${replyText(mail)}: the state across STARTTLS cannot be probed without a plaintext transaction`, mailBeforeTls };
    // No EHLO inside TLS yet: the first RCPT goes straight after the handshake (below).
    const st = await startTls(ctx, conn, { ehlo: false });
    if (!st.ok && st.stage === 'starttls') return { outcome: 'not-tested', evidence: `STARTTLS answered ${replyText(st.reply)}`, mailBeforeTls };
    if (!st.ok) return { outcome: 'not-tested', evidence: `TLS handshake failed: ${st.error}`, mailBeforeTls };
    // Straight after the handshake, before any EHLO: a server that reset its state answers 503
    // (no MAIL, or EHLO needed); one that kept the plaintext MAIL accepts the recipient.
    const rcpt = `RCPT TO:<postmaster@${rcptDomain}>`;
    const early = await conn.command(rcpt);
    let evidence = `RCPT right after the handshake answered ${replyText(early)}`;
    let outcome: StateOutcome = judgeRcpt(early);
    if (outcome === 'reset') {
      const ehlo = await conn.command(`EHLO ${ehloArgument(ctx, conn)}`);
      if (ehlo.code !== 250) return { outcome: 'inconclusive', evidence: `${evidence}; EHLO inside TLS answered ${replyText(ehlo)}`, mailBeforeTls };
      const late = await conn.command(rcpt);
      evidence += `; after EHLO inside TLS, RCPT answered ${replyText(late)}`;
      outcome = judgeRcpt(late);
    }
    await conn.quit();
    return { outcome, evidence: `MAIL given only in plaintext; ${evidence}`, mailBeforeTls };
  } catch (e) {
    return { outcome: 'inconclusive', evidence: e instanceof Error ? e.message : String(e), mailBeforeTls };
  } finally {
    conn.close();
  }
}
