/**
 * probeSession(): one connection made ready for mail exactly as a delivery would (connect, EHLO,
 * STARTTLS at the level, handshake, certificate or TLSA check, EHLO again), then QUIT — no MAIL.
 * `postseal policy explain --connect` uses it to say whether delivery would succeed.
 *
 * Invariants: the same openSession() as deliver(), so the answer cannot differ from a real
 * attempt's TLS outcome; never sends MAIL, RCPT or content; never throws.
 */
import { openSession, type DeliveryFinding, type SessionOptions } from './open-session.js';
import type { TlsReached } from './levels.js';
import type { TlsSessionInfo } from './tls-session.js';
import { Transcript, type TranscriptEntry } from './transcript.js';

export interface ProbeResult {
  /** The session reached the state in which the level lets mail go. */
  ok: boolean;
  host: string;
  serverName: string;
  reached: TlsReached;
  tls: TlsSessionInfo | null;
  error: { code: string; message: string } | null;
  findings: DeliveryFinding[];
  transcript: TranscriptEntry[];
}

export async function probeSession(opts: SessionOptions): Promise<ProbeResult> {
  const transcript = new Transcript();
  const findings: DeliveryFinding[] = [];
  let s = await openSession(opts, transcript, findings, false);
  if (s.kind === 'retry-plain') s = await openSession(opts, transcript, findings, true);
  const base = { host: opts.host, serverName: opts.serverName ?? opts.host, findings };
  if (s.kind === 'open') {
    await s.client.quit();
    const reached: TlsReached = s.tls === null ? 'none' : s.tls.dane !== null ? 'dane' : s.tls.verified ? 'verify' : 'encrypt';
    return { ...base, ok: true, reached, tls: s.tls, error: null, transcript: transcript.entries };
  }
  const error = s.kind === 'failed' ? { code: s.error.code, message: s.error.message } : { code: 'PROTOCOL_ERROR', message: 'plaintext retry asked for twice' };
  const tls = s.kind === 'failed' ? s.tls : null;
  return { ...base, ok: false, reached: 'none', tls, error, transcript: transcript.entries };
}
