/**
 * SMTP-level probes that send no mail, each on its own connection: a second STARTTLS inside TLS,
 * STARTTLS with an argument, and the early talker (a command sent before the greeting).
 *
 * Invariants: every verdict comes from the reply code to the probe's own command (no timing);
 * a probe that cannot reach the point where it asks is 'not-tested' with the reason; a reply
 * that fits neither verdict is 'inconclusive', never guessed; nothing is sent after a 220 that
 * the probe does not intend to follow (the connection is closed instead of handshaking again).
 */
import { replyText } from '../protocol/reply.js';
import { ProbeConnection } from './conn.js';
import { connectAndEhlo, ehloArgument, reachTls, tlsOptions, type CheckContext } from './probe-setup.js';
import type { CommandOutcome, EarlyTalkerOutcome } from './types.js';

export interface CommandProbe {
  outcome: CommandOutcome;
  evidence: string;
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** How long the early-talker probe waits for the answer to its early EHLO (a bound, not a verdict). */
const EARLY_TALKER_WAIT_MS = 5000;

function judgeStarttls(code: number): CommandOutcome {
  if (code === 220) return 'accepted';
  return code >= 400 ? 'refused' : 'inconclusive';
}

/**
 * RFC 3207 §4.2: once TLS is on, STARTTLS must not be offered, and a second STARTTLS is refused
 * (503/5xx). A 220 means the server would start a TLS handshake inside TLS (aiosmtpd does this).
 */
export async function probeStarttlsAgain(ctx: CheckContext): Promise<CommandProbe> {
  let conn: ProbeConnection;
  try {
    if (ctx.implicit) {
      conn = (await connectAndEhlo(ctx)).conn;
    } else {
      const s = await reachTls(ctx, tlsOptions(ctx));
      if (!s.ok) return { outcome: 'not-tested', evidence: `no TLS session (${s.stage}): ${s.error}` };
      conn = s.conn;
    }
  } catch (e) {
    return { outcome: 'not-tested', evidence: message(e) };
  }
  try {
    if (!ctx.implicit) {
      const ehlo = await conn.command(`EHLO ${ehloArgument(ctx, conn)}`);
      if (ehlo.code !== 250) return { outcome: 'inconclusive', evidence: `EHLO inside TLS answered ${replyText(ehlo)}` };
    }
    const r = await conn.command('STARTTLS');
    return { outcome: judgeStarttls(r.code), evidence: `STARTTLS inside TLS answered ${replyText(r)}` };
  } catch (e) {
    return { outcome: 'inconclusive', evidence: message(e) };
  } finally {
    conn.close();
  }
}

/** RFC 3207 §4: "STARTTLS" takes no parameters; a server answers 501 to any argument. */
export async function probeStarttlsArgument(ctx: CheckContext): Promise<CommandProbe> {
  if (ctx.implicit) return { outcome: 'not-tested', evidence: 'implicit TLS: no STARTTLS' };
  let conn: ProbeConnection;
  try {
    conn = (await connectAndEhlo(ctx)).conn;
  } catch (e) {
    return { outcome: 'not-tested', evidence: message(e) };
  }
  try {
    const r = await conn.command('STARTTLS x');
    return { outcome: judgeStarttls(r.code), evidence: `"STARTTLS x" answered ${replyText(r)}` };
  } catch (e) {
    return { outcome: 'inconclusive', evidence: message(e) };
  } finally {
    conn.close();
  }
}

/**
 * RFC 5321 §3.1 / §4.3.1: a client waits for the 220 greeting before its first command. EHLO is
 * written as soon as the connection is open; a server that notices (Exim's synchronization check,
 * Postfix postscreen's pregreet test) refuses or closes, one that does not answers 250.
 */
export async function probeEarlyTalker(ctx: CheckContext): Promise<{ outcome: EarlyTalkerOutcome; evidence: string }> {
  let conn: ProbeConnection;
  try {
    conn = await ProbeConnection.open(ctx.target, { timeoutMs: ctx.timeoutMs, implicitTls: ctx.implicit ? tlsOptions(ctx) : undefined });
  } catch (e) {
    return { outcome: 'not-tested', evidence: message(e) };
  }
  try {
    conn.send(`EHLO ${ehloArgument(ctx, conn)}`);
    let greeting;
    try {
      greeting = await conn.readReply();
    } catch (e) {
      return { outcome: 'refused', evidence: `EHLO sent before the greeting; then: ${message(e)}` };
    }
    if (greeting.code !== 220) return { outcome: 'refused', evidence: `EHLO sent before the greeting; greeting: ${replyText(greeting)}` };
    let answer;
    try {
      answer = await conn.readReply(Math.min(ctx.timeoutMs, EARLY_TALKER_WAIT_MS));
    } catch (e) {
      const m = message(e);
      return /closed/i.test(m) ? { outcome: 'refused', evidence: `EHLO sent before the greeting; the server closed the connection` } : { outcome: 'inconclusive', evidence: `EHLO sent before the greeting: ${m}` };
    }
    const evidence = `EHLO sent before the greeting answered ${answer.code} ${answer.lines[0] ?? ''}${answer.lines.length > 1 ? ' ...' : ''}`;
    if (answer.code === 250) return { outcome: 'answered', evidence };
    return { outcome: answer.code >= 400 ? 'refused' : 'inconclusive', evidence };
  } catch (e) {
    return { outcome: 'inconclusive', evidence: message(e) };
  } finally {
    conn.close();
  }
}
