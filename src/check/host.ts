/**
 * checkHost: every host check for one SMTP server (one address, one port), as a typed report.
 *
 * The main session is the conversation shown to the user: greeting, plaintext EHLO, STARTTLS, the
 * handshake, EHLO inside TLS. The other probes (versions, cipher classes, renegotiation, no-SNI,
 * injection, state reset, smuggling) each use their own connection, a few at a time.
 *
 * Invariants: AUTH is only observed, never attempted; no DATA is sent unless `smuggling` is given;
 * everything received before TLS is marked `tls: false` in the transcript; a host that cannot be
 * reached or does not greet gives status 'error' (exit 2), never a grade.
 */
import net from 'node:net';
import type tls from 'node:tls';
import { PostsealError } from '../errors.js';
import { replyText } from '../protocol/reply.js';
import { summarizeTls } from '../tls/summary.js';
import { probeInjectionPartialLine, probeInjectionWholeLine, probeStateReset } from './attacks.js';
import { deriveHostFindings } from './findings.js';
import { gradeHost } from './grade.js';
import { connectAndEhlo, keywordsOf, printable, startTls, summarizeReply, type CheckContext } from './probe-setup.js';
import { firstContact, GREETING_SNIFF_MS } from './first-contact.js';
import { probeEarlyTalker, probeStarttlsAgain, probeStarttlsArgument } from './probes-starttls.js';
import { probeCipherOrder, probeDhe } from './probes-tls.js';
import { probeSmuggling } from './smuggling.js';
import { certificateFacts, probeAllCipherClasses, probeAllVersions, probeNoSni, probeRenegotiation } from './tls-scan.js';
import { SCHEMA_VERSION, type HostReport, type ProbeResults, type SmtpFacts, type TranscriptEntry } from './types.js';

export interface CheckHostOptions {
  /** Default 25. */
  port?: number;
  /** Address to connect to instead of resolving the host name (domain mode passes each address). */
  address?: string;
  /** TLS from the first byte; default: port 465. */
  implicitTls?: boolean;
  /** Submission semantics (MAIL before TLS should get 530); default: port 587 or 465. */
  submission?: boolean;
  /** Extra trust anchors, PEM text. */
  ca?: string[];
  /** Per-read and per-handshake timeout; default 15 s. */
  timeoutMs?: number;
  ehloName?: string;
  /** Domain used in the RCPT of the state-reset probe (postmaster@DOMAIN); default: the host. */
  rcptDomain?: string;
  /** Default true: version, cipher-class, renegotiation and no-SNI probes. */
  tlsScan?: boolean;
  /** Default true: injection and state-reset probes. */
  attacks?: boolean;
  /** Opt-in: sends real test mails to `rcpt` (SMTP smuggling end-of-data variants). */
  smuggling?: { rcpt: string; from?: string } | null;
  /** Probe connections in flight at once (default 3). */
  concurrency?: number;
  /**
   * When implicitTls is not given: how long to wait for a plaintext greeting before trying TLS
   * from the first byte (implicit TLS on a port other than 465). Default GREETING_SNIFF_MS; 0 = never.
   */
  sniffImplicitMs?: number;
  /**
   * Called at each step as it happens (connect, greeting, ehlo, starttls, handshake, probes,
   * probe, done); for live progress (the HTTP API's event stream). Never affects the report.
   */
  onProgress?: (event: HostProgress) => void;
}

/** One step of a host check, as reported to `onProgress`. */
export interface HostProgress {
  step: 'connect' | 'greeting' | 'ehlo' | 'starttls' | 'handshake' | 'probes' | 'probe' | 'done';
  detail: string;
}

function emptySmtp(): SmtpFacts {
  return {
    greeting: null, greetingMs: null, ehlo: null, starttlsAdvertised: false, authBeforeTls: [],
    starttlsReply: null, bytesAfterStarttls: null, ehloAfterTls: null, starttlsOfferedAgain: null, authAfterTls: null,
  };
}

function emptyProbes(): ProbeResults {
  const nt = { outcome: 'not-tested' as const, evidence: '' };
  return {
    injectionWholeLine: nt, injectionPartialLine: nt, stateReset: nt, mailBeforeTls: null, smuggling: null,
    starttlsAgain: nt, starttlsArgument: nt, earlyTalker: nt,
  };
}

/** Runs tasks with at most `n` in flight. */
async function pool(tasks: Array<() => Promise<void>>, n: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const t = tasks[next++];
      if (t) await t();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, n) }, worker));
}

export async function checkHost(host: string, options: CheckHostOptions = {}): Promise<HostReport> {
  const port = options.port ?? 25;
  const implicit = options.implicitTls ?? port === 465;
  const submission = options.submission ?? (port === 587 || port === 465);
  const address = options.address ?? host;
  const startedAt = new Date();
  const transcript: TranscriptEntry[] = [];
  const ctx: CheckContext = {
    target: { host, address, port },
    implicit,
    timeoutMs: options.timeoutMs ?? 15_000,
    ca: options.ca ?? [],
    ehloName: options.ehloName ?? null,
  };
  const report: HostReport = {
    schemaVersion: SCHEMA_VERSION,
    kind: 'host',
    target: { host, address, port, mode: implicit ? 'implicit' : 'starttls', submission },
    startedAt: startedAt.toISOString(),
    durationMs: 0,
    status: 'checked',
    error: null,
    grade: null,
    findings: [],
    smtp: emptySmtp(),
    tls: null,
    certificate: null,
    probes: emptyProbes(),
    transcript,
  };
  const finish = (): HostReport => {
    report.durationMs = Date.now() - startedAt.getTime();
    if (report.status === 'checked') {
      report.findings = deriveHostFindings(report);
      report.grade = gradeHost(report);
    }
    return report;
  };

  // Implicit TLS on an unusual port: no plaintext greeting, but a TLS handshake works. Check it as
  // implicit TLS (RFC 8314 §3) instead of waiting the full timeout for a greeting that never comes.
  let silence: string | null = null;
  const sniffMs = Math.min(options.sniffImplicitMs ?? GREETING_SNIFF_MS, ctx.timeoutMs);
  if (options.implicitTls === undefined && !implicit && sniffMs > 0) {
    const first = await firstContact(ctx, sniffMs);
    if (first.kind === 'tls') {
      const r = await checkHost(host, { ...options, implicitTls: true });
      r.transcript.unshift({ dir: 'event', tls: false, text: `no greeting within ${sniffMs} ms on a plaintext connection, but a ${first.protocol} handshake succeeded: checked as implicit TLS (RFC 8314 §3; --implicit skips this wait)` });
      r.durationMs = Date.now() - startedAt.getTime();
      return r;
    }
    if (first.kind === 'silent') silence = first.detail;
  }

  let tlsSocket: tls.TLSSocket | null = null;
  let handshakeMs = 0;
  const progress = (step: HostProgress['step'], detail: string): void => {
    try {
      options.onProgress?.({ step, detail });
    } catch {
      // A failing listener must not change the check.
    }
  };
  try {
    progress('connect', `${address}:${port}${implicit ? ' (implicit TLS)' : ''}`);
    const g = await connectAndEhlo(ctx, transcript);
    const { conn } = g;
    progress('greeting', `${g.greeting.code} after ${g.greetingMs} ms`);
    progress('ehlo', g.ehlo.code === 250 ? Object.keys(keywordsOf(g.ehlo)).join(' ') : `${g.ehlo.code}`);
    report.smtp.greeting = summarizeReply(g.greeting);
    report.smtp.greetingMs = g.greetingMs;
    const caps = keywordsOf(g.ehlo);
    try {
      if (implicit) {
        tlsSocket = conn.tlsSocket;
        report.smtp.ehloAfterTls = caps;
        report.smtp.starttlsOfferedAgain = 'STARTTLS' in caps;
        report.smtp.authAfterTls = caps.AUTH ?? [];
      } else {
        report.smtp.ehlo = caps;
        report.smtp.starttlsAdvertised = 'STARTTLS' in caps;
        report.smtp.authBeforeTls = caps.AUTH ?? [];
        if (!report.smtp.starttlsAdvertised) conn.note('STARTTLS not advertised; trying it anyway (stripped keyword?)');
        const st = await startTls(ctx, conn);
        progress('starttls', `${st.reply.code}`);
        if (st.reply.code === 220) progress('handshake', st.ok ? `ok in ${st.handshakeMs} ms` : `failed: ${st.stage === 'handshake' ? st.error : st.stage}`);
        report.smtp.starttlsReply = summarizeReply(st.reply);
        // RFC 3207 §4.2 / response injection: bytes after the 220 are not TLS-protected (the
        // transport discarded them and noted it in the transcript).
        if (st.discarded.length > 0) report.smtp.bytesAfterStarttls = printable(st.discarded);
        if (st.reply.code === 220) {
          if (st.ok) {
            tlsSocket = st.socket;
            handshakeMs = st.handshakeMs;
            const again = st.ehlo;
            if (again?.code === 250) {
              const after = keywordsOf(again);
              report.smtp.ehloAfterTls = after;
              // RFC 3207 §4.2: STARTTLS must not be advertised after a successful negotiation.
              report.smtp.starttlsOfferedAgain = 'STARTTLS' in after;
              report.smtp.authAfterTls = after.AUTH ?? [];
            } else {
              conn.note(`EHLO inside TLS refused: ${again ? replyText(again) : '(not sent)'}`);
            }
          } else if (st.stage === 'handshake') {
            report.smtp.starttlsReply = { code: st.reply.code, text: `${report.smtp.starttlsReply.text} (handshake failed: ${st.error})` };
          }
        }
      }
      if (tlsSocket !== null) {
        const facts = summarizeTls(tlsSocket, { sni: net.isIP(host) === 0 ? host : null });
        report.tls = {
          protocol: facts.protocol,
          cipher: facts.cipher,
          group: facts.group,
          handshakeMs,
          versions: { TLSv1: 'not-tested', 'TLSv1.1': 'not-tested', 'TLSv1.2': 'not-tested', 'TLSv1.3': 'not-tested' },
          cipherClasses: {
            null: { outcome: 'not-tested', cipher: null }, export: { outcome: 'not-tested', cipher: null },
            rc4: { outcome: 'not-tested', cipher: null }, '3des': { outcome: 'not-tested', cipher: null },
            anon: { outcome: 'not-tested', cipher: null }, 'rsa-kx': { outcome: 'not-tested', cipher: null },
            'cbc-sha1': { outcome: 'not-tested', cipher: null },
          },
          clientRenegotiation: 'not-tested',
          secureRenegotiation: 'not-tested',
          dhe: { outcome: 'not-tested', bits: null, cipher: null },
          cipherOrder: { outcome: 'not-tested', evidence: '' },
        };
        report.certificate = certificateFacts(tlsSocket, host, Date.now(), ctx.ca);
      }
      await conn.quit();
    } finally {
      conn.close();
    }
  } catch (e) {
    report.status = 'error';
    progress('done', `could not check: ${e instanceof Error ? e.message : String(e)}`);
    report.error = e instanceof PostsealError ? { code: e.code, message: e.message } : { code: 'CHECK_FAILED', message: e instanceof Error ? e.message : String(e) };
    if (report.error.code === 'CHECK_TIMEOUT' && report.smtp.greeting === null && !implicit) {
      report.error.message = `no greeting within ${ctx.timeoutMs} ms: is this implicit TLS? try --implicit${silence !== null ? ` (${silence})` : ''}`;
    }
    return finish();
  }

  const tasks: Array<() => Promise<void>> = [];
  const tlsReport = report.tls;
  const cert = report.certificate;
  if (tlsReport !== null && options.tlsScan !== false) {
    tasks.push(async () => void (tlsReport.versions = await probeAllVersions(ctx)));
    tasks.push(async () => void (tlsReport.cipherClasses = await probeAllCipherClasses(ctx)));
    tasks.push(async () => void (tlsReport.clientRenegotiation = await probeRenegotiation(ctx)));
    tasks.push(async () => void (tlsReport.dhe = await probeDhe(ctx)));
    tasks.push(async () => void (tlsReport.cipherOrder = await probeCipherOrder(ctx)));
    if (cert !== null) {
      tasks.push(async () => {
        const n = await probeNoSni(ctx);
        const leaf = cert.chain[0];
        cert.noSni = n === null ? null : { ...n, same: n.fingerprint256 !== null && leaf !== undefined ? n.fingerprint256 === leaf.fingerprint256 : null };
      });
    }
  }
  if (!implicit && options.attacks !== false && report.smtp.starttlsReply?.code === 220) {
    const rcptDomain = options.rcptDomain ?? (net.isIP(host) === 0 ? host : `[${host}]`);
    tasks.push(async () => void (report.probes.injectionWholeLine = await probeInjectionWholeLine(ctx)));
    tasks.push(async () => void (report.probes.injectionPartialLine = await probeInjectionPartialLine(ctx)));
    tasks.push(async () => {
      const s = await probeStateReset(ctx, rcptDomain);
      report.probes.stateReset = { outcome: s.outcome, evidence: s.evidence };
      report.probes.mailBeforeTls = s.mailBeforeTls;
    });
  }
  if (options.attacks !== false && tlsReport !== null) {
    tasks.push(async () => void (report.probes.starttlsAgain = await probeStarttlsAgain(ctx)));
    if (!implicit) tasks.push(async () => void (report.probes.starttlsArgument = await probeStarttlsArgument(ctx)));
  }
  if (options.attacks !== false) tasks.push(async () => void (report.probes.earlyTalker = await probeEarlyTalker(ctx)));
  const smuggling = options.smuggling;
  if (smuggling) tasks.push(async () => void (report.probes.smuggling = await probeSmuggling(ctx, tlsReport !== null, smuggling)));
  progress('probes', `${tasks.length} probe connections`);
  let probesDone = 0;
  await pool(tasks.map((t) => async () => {
    await t();
    progress('probe', `${++probesDone}/${tasks.length}`);
  }), options.concurrency ?? 3);
  progress('done', 'checked');
  return finish();
}
