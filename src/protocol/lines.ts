/**
 * Command-line framing over a byte buffer, with a hard length limit.
 *
 * Invariants: a line is returned without its terminator. CRLF ends a line (`line`); a bare LF also
 * ends one but is reported as its own kind (`bare-lf`), so the caller decides: RFC 5321 §2.3.8
 * says CRLF only, the server's `bareLineEndings` setting chooses refuse-and-close ('reject', as
 * Postfix smtpd_forbid_bare_newline=reject) or accept ('normalize', Postfix ≥ 3.9's default,
 * aiosmtpd, go-smtp). DATA uses the strict reader in data.ts instead. A bare CR inside a line is
 * just a byte of it. Memory is bounded: a line longer than the limit is never held whole; its
 * bytes are dropped as they arrive and the caller is told once the line ends (RFC 5321
 * §4.5.3.1.4 → 500), whatever ended it.
 */

export const CR = 0x0d;
export const LF = 0x0a;

export type FramedLine =
  | { kind: 'line'; text: string; end: number }
  /** A line that ended in LF without CR before it (RFC 5321 §2.3.8 violation); text as for 'line'. */
  | { kind: 'bare-lf'; text: string; end: number }
  | { kind: 'too-long'; end: number };

/**
 * Incremental line framer. `scan` looks at buf[start..end) and returns the first complete line
 * (with `end` = index just past its LF) or null when more bytes are needed. While a too-long line
 * is being skipped, `scan` reports how many bytes it may drop through `dropped`.
 */
export class LineFramer {
  private skipping = false;
  /**
   * `asciiSlice`, when given, turns buf[start..end) of a line already known to be ASCII into a
   * string (the transport passes Buffer's native latin1 slice; this module stays free of node:*).
   */
  constructor(
    readonly maxLength: number,
    private readonly asciiSlice: AsciiSlice | null = null,
  ) {}

  /** True while the framer is discarding the rest of an over-long line. */
  get isSkipping(): boolean {
    return this.skipping;
  }

  reset(): void {
    this.skipping = false;
  }

  /**
   * Returns a framed line, or `{ need: consumedUpTo }` meaning bytes before consumedUpTo may be
   * dropped (an over-long line being skipped) and more input is needed.
   */
  scan(buf: Uint8Array, start: number, end: number): FramedLine | { kind: 'need'; keepFrom: number } {
    const lf = indexOfByte(buf, LF, start, end);
    if (lf < 0) {
      // A CR at the end may be the first half of a CRLF split across reads: it is not text yet,
      // so a line of exactly maxLength octets is not declared too long before its LF arrives.
      const pending = end > start && buf[end - 1] === CR ? end - start - 1 : end - start;
      if (this.skipping || pending > this.maxLength) {
        this.skipping = true;
        return { kind: 'need', keepFrom: end };
      }
      return { kind: 'need', keepFrom: start };
    }
    if (this.skipping) {
      this.skipping = false;
      return { kind: 'too-long', end: lf + 1 };
    }
    // RFC 5321 §2.3.8: CRLF is the only line ending; one compare tells a bare LF apart.
    const crlf = lf > start && buf[lf - 1] === CR;
    const stop = crlf ? lf - 1 : lf;
    if (stop - start > this.maxLength) return { kind: 'too-long', end: lf + 1 };
    return { kind: crlf ? 'line' : 'bare-lf', text: decodeUtf8(buf, start, stop, this.asciiSlice), end: lf + 1 };
  }
}

export function indexOfByte(buf: Uint8Array, byte: number, start: number, end: number): number {
  const i = buf.indexOf(byte, start);
  return i < 0 || i >= end ? -1 : i;
}

const decoder = new TextDecoder('utf-8', { fatal: false });

/** Decodes bytes known to be ASCII (so latin1 and UTF-8 agree) into a string. */
export type AsciiSlice = (buf: Uint8Array, start: number, end: number) => string;

export function decodeUtf8(buf: Uint8Array, start: number, end: number, asciiSlice: AsciiSlice | null = null): string {
  // Fast path for ASCII, which is nearly every command line.
  if (end - start < 256) {
    let i = start;
    while (i < end && (buf[i] as number) < 0x80) i++;
    if (i === end) {
      if (asciiSlice !== null) return asciiSlice(buf, start, end);
      let s = '';
      for (let j = start; j < end; j++) s += String.fromCharCode(buf[j] as number);
      return s;
    }
  }
  return decoder.decode(buf.subarray(start, end));
}
