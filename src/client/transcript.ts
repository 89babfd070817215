/**
 * The record of one delivery conversation, for `--json`, the checker and tests.
 *
 * Invariants: AUTH lines and SASL exchanges are redacted before they are recorded (never a
 * password or its base64); message content is recorded as a byte count, never as text; every
 * entry says whether it travelled in plaintext or inside TLS.
 */

export type TranscriptPhase = 'plaintext' | 'tls';

export interface TranscriptEntry {
  /** 'C' client → server, 'S' server → client, 'event' something the client noticed or did. */
  direction: 'C' | 'S' | 'event';
  line: string;
  phase: TranscriptPhase;
  /** 1 for the first connection of an attempt, 2 for a plaintext retry, ... */
  connection: number;
}

export class Transcript {
  readonly entries: TranscriptEntry[] = [];
  connection = 1;

  sent(line: string, phase: TranscriptPhase): void {
    this.entries.push({ direction: 'C', line, phase, connection: this.connection });
  }

  received(line: string, phase: TranscriptPhase): void {
    this.entries.push({ direction: 'S', line, phase, connection: this.connection });
  }

  event(line: string, phase: TranscriptPhase): void {
    this.entries.push({ direction: 'event', line, phase, connection: this.connection });
  }

  /** Client lines only, as sent (redacted), for assertions and the checker. */
  clientLines(): string[] {
    return this.entries.filter((e) => e.direction === 'C').map((e) => e.line);
  }
}

/** `AUTH PLAIN dXNlcg...` → `AUTH PLAIN [redacted]`; SASL continuation lines → `[redacted]`. */
export function redactAuth(line: string): string {
  const m = /^(AUTH\s+\S+)/i.exec(line);
  return m ? `${m[1]} [redacted]` : line;
}
