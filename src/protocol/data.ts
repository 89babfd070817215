/**
 * DATA content reading (RFC 5321 §4.1.1.4, §4.5.2) and dot-stuffing for sending.
 *
 * Invariants (SMTP smuggling, CVE-2023-51764 class):
 * - only <CRLF>.<CRLF> ends DATA; the CRLF of the DATA command counts as the first CRLF, so an
 *   empty message is ".\r\n" right after the 354. <LF>.<LF>, <LF>.<CRLF>, <CRLF>.<LF>,
 *   <CR>.<CR> and every other variant are content, never an end;
 * - a bare CR or a bare LF in the content is recorded (bareCr / bareLf); the caller rejects the
 *   message by default, or asks for `normalize` and gets each bare CR or LF rewritten to CRLF;
 * - a line beginning with "." loses that first "." (transparency, §4.5.2);
 * - output is kept as slices of the input (no copy) and stops growing past maxSize, while the
 *   reader still scans to the terminator so the session stays in step with the client.
 */
import { CR, LF } from './lines.js';

const DOT = 0x2e;
const CRLF_BYTES = new Uint8Array([CR, LF]);
const CR_BYTES = new Uint8Array([CR]);

/**
 * Reader states: at the start of a line, inside a line, after a CR, after a leading dot, after
 * ".CR", and at the start of a line that followed a bare CR or LF (BareStart: a leading dot is
 * still unstuffed, but such a line can never be the end of data, RFC 5321 §4.1.1.4).
 */
const S = { LineStart: 0, Mid: 1, AfterCr: 2, Dot: 3, DotCr: 4, BareStart: 5 } as const;
type State = (typeof S)[keyof typeof S];

export interface DotReaderOptions {
  maxSize: number;
  normalize: boolean;
}

export class DotReader {
  private state: State = S.LineStart;
  private out: Uint8Array[] = [];
  /** Bytes of content produced so far (counted even past maxSize). */
  size = 0;
  bareCr = false;
  bareLf = false;
  /** True once content passed maxSize; content is no longer kept. */
  tooBig = false;
  done = false;

  constructor(private readonly opts: DotReaderOptions) {}

  /**
   * Consumes buf[start..end). Returns the index just past the terminating LF when the end of data
   * was found, or -1 when all of the input was consumed and more is needed.
   */
  feed(buf: Uint8Array, start: number, end: number): number {
    let i = start;
    let seg = start; // start of the pending verbatim segment
    const norm = this.opts.normalize;
    while (i < end) {
      switch (this.state) {
        case S.LineStart: {
          if (buf[i] === DOT) {
            this.emit(buf, seg, i);
            i++;
            seg = i;
            this.state = S.Dot;
            continue;
          }
          this.state = S.Mid;
          continue;
        }
        case S.Mid: {
          // Fast path: jump to the next CR or LF.
          const p = nextCrOrLf(buf, i, end);
          if (p < 0) {
            i = end;
            continue;
          }
          if (buf[p] === CR) {
            i = p + 1;
            this.state = S.AfterCr;
          } else {
            // Bare LF (no CR before it in this line).
            this.bareLf = true;
            if (norm) {
              this.emit(buf, seg, p);
              this.emitConst(CRLF_BYTES);
              seg = p + 1;
            }
            i = p + 1;
            // Not LineStart: "<LF>.<CRLF>" must not end DATA (CVE-2023-51764).
            this.state = S.BareStart;
          }
          continue;
        }
        case S.AfterCr: {
          if (buf[i] === LF) {
            i++;
            this.state = S.LineStart;
            continue;
          }
          // Bare CR: the CR is already part of the pending segment.
          this.bareCr = true;
          if (norm) {
            this.emit(buf, seg, i);
            this.emitConst(LF_ONLY);
            seg = i;
            // The normalized CR is still bare on the wire: "<CR>.<CRLF>" must not end DATA.
            this.state = S.BareStart;
          } else {
            this.state = S.Mid;
          }
          continue;
        }
        case S.Dot: {
          if (buf[i] === CR) {
            // Hold the CR back: if LF follows, this is the end and the CR is not content.
            i++;
            seg = i;
            this.state = S.DotCr;
            continue;
          }
          // The leading dot was removed; the rest of the line is content.
          this.state = S.Mid;
          continue;
        }
        case S.BareStart: {
          // After a bare CR/LF: unstuff a leading dot (as Postfix does) but never end here.
          if (buf[i] === DOT) {
            this.emit(buf, seg, i);
            i++;
            seg = i;
          }
          this.state = S.Mid;
          continue;
        }
        case S.DotCr: {
          if (buf[i] === LF) {
            // <CRLF>.<CRLF>: the only end of data.
            this.done = true;
            this.state = S.LineStart;
            return i + 1;
          }
          // "." CR followed by something else: the CR was a bare CR, and content.
          this.bareCr = true;
          if (norm) {
            this.emitConst(CRLF_BYTES);
            this.state = S.BareStart;
          } else {
            this.emitConst(CR_BYTES);
            this.state = S.Mid;
          }
          seg = i;
          continue;
        }
      }
    }
    this.emit(buf, seg, end);
    return -1;
  }

  /** The content read so far and not yet taken (whole message once done, if never taken). */
  content(): Uint8Array[] {
    return this.out;
  }

  /**
   * Hands over the content produced since the last take (views into the input buffers) and
   * forgets it, so a caller can stream a large message elsewhere as it arrives.
   */
  take(): Uint8Array[] {
    const out = this.out;
    if (out.length === 0) return out;
    this.out = [];
    return out;
  }

  private emit(buf: Uint8Array, from: number, to: number): void {
    if (to <= from) return;
    this.size += to - from;
    if (this.size > this.opts.maxSize) {
      this.tooBig = true;
      this.out.length = 0;
      return;
    }
    this.out.push(buf.subarray(from, to));
  }

  private emitConst(bytes: Uint8Array): void {
    this.emit(bytes, 0, bytes.length);
  }
}

const LF_ONLY = new Uint8Array([LF]);

function nextCrOrLf(buf: Uint8Array, from: number, end: number): number {
  let lf = buf.indexOf(LF, from);
  if (lf >= end) lf = -1;
  const cr = firstCr(buf, from, lf < 0 ? end : lf);
  return cr >= 0 ? cr : lf;
}

function firstCr(buf: Uint8Array, from: number, to: number): number {
  const cr = buf.indexOf(CR, from);
  return cr < 0 || cr >= to ? -1 : cr;
}

/**
 * Dot-stuffs message content for sending (RFC 5321 §4.5.2) and appends the terminator.
 * The input must use CRLF line endings; the caller refuses bare CR/LF before calling (a relay never
 * sends a bare CR or LF onward). If the content does not end with CRLF, one is added.
 */
export function dotStuff(content: Uint8Array): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let seg = 0;
  if (content.length > 0 && content[0] === DOT) {
    parts.push(DOT_BYTES);
  }
  let i = content.indexOf(LF);
  while (i >= 0 && i + 1 < content.length) {
    if (content[i + 1] === DOT) {
      parts.push(content.subarray(seg, i + 1));
      parts.push(DOT_BYTES);
      seg = i + 1;
    }
    i = content.indexOf(LF, i + 1);
  }
  parts.push(content.subarray(seg));
  const endsWithCrlf = content.length >= 2 && content[content.length - 2] === CR && content[content.length - 1] === LF;
  parts.push(endsWithCrlf ? END_OF_DATA : CRLF_END_OF_DATA);
  return parts;
}

const DOT_BYTES = new Uint8Array([DOT]);
const END_OF_DATA = new Uint8Array([DOT, CR, LF]);
const CRLF_END_OF_DATA = new Uint8Array([CR, LF, DOT, CR, LF]);

/**
 * Every bare CR, bare LF and CRLF becomes CRLF (the `normalize` choice for bare line endings, on
 * the server for BDAT content and on the client before sending). Runs of ordinary bytes are
 * copied as slices, not byte by byte.
 */
export function normalizeLineEndings(bytes: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let seg = 0;
  let size = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b !== CR && b !== LF) continue;
    if (b === CR && bytes[i + 1] === LF) {
      i++;
      continue;
    }
    // A bare CR or LF: keep what came before it, then a CRLF in its place.
    parts.push(bytes.subarray(seg, i), CRLF_BYTES);
    size += i - seg + 2;
    seg = i + 1;
  }
  if (parts.length === 0) return bytes;
  parts.push(bytes.subarray(seg));
  size += bytes.length - seg;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Bare CR / bare LF over a stream of pieces (BDAT chunks, RFC 3030: content arrives in pieces of
 * the client's choosing, so a CRLF may be split between two). With `normalize`, push() returns the
 * pieces with every bare CR or LF rewritten to CRLF (a CR at the end of a piece is held back until
 * the next piece says whether an LF follows); otherwise it returns them unchanged and only records
 * `bare`. end() settles a CR held at the very end (bare: the content does not end in CRLF there).
 */
export class LineEndingStream {
  bare = false;
  /** The previous piece ended with CR (held back when normalizing). */
  private lastCr = false;

  constructor(private readonly normalize: boolean) {}

  push(p: Uint8Array): Uint8Array[] {
    if (p.length === 0) return [];
    if (!this.normalize) {
      if (!this.bare) this.bare = this.scan(p);
      this.lastCr = p[p.length - 1] === CR;
      return [p];
    }
    const out: Uint8Array[] = [];
    let body = p;
    if (this.lastCr) {
      out.push(CRLF_BYTES);
      if (body[0] === LF) body = body.subarray(1);
      else this.bare = true;
      this.lastCr = false;
    }
    if (body.length > 0 && body[body.length - 1] === CR) {
      this.lastCr = true;
      body = body.subarray(0, body.length - 1);
    }
    if (hasBareCrOrLf(body)) {
      this.bare = true;
      out.push(normalizeLineEndings(body));
    } else if (body.length > 0) {
      out.push(body);
    }
    return out;
  }

  end(): Uint8Array[] {
    if (!this.lastCr) return [];
    this.lastCr = false;
    this.bare = true;
    return this.normalize ? [CRLF_BYTES] : [];
  }

  /** Bare CR or LF in p, given whether the previous piece ended with CR. */
  private scan(p: Uint8Array): boolean {
    if (this.lastCr && p[0] !== LF) return true;
    let i = p.indexOf(CR);
    while (i >= 0) {
      if (i + 1 < p.length && p[i + 1] !== LF) return true;
      i = p.indexOf(CR, i + 1);
    }
    let j = p.indexOf(LF);
    while (j >= 0) {
      if (!(j === 0 ? this.lastCr : p[j - 1] === CR)) return true;
      j = p.indexOf(LF, j + 1);
    }
    return false;
  }
}

/** True when the bytes contain a CR not followed by LF, or an LF not preceded by CR. */
export function hasBareCrOrLf(content: Uint8Array): boolean {
  let i = content.indexOf(CR);
  while (i >= 0) {
    if (content[i + 1] !== LF) return true;
    i = content.indexOf(CR, i + 1);
  }
  let j = content.indexOf(LF);
  while (j >= 0) {
    if (j === 0 || content[j - 1] !== CR) return true;
    j = content.indexOf(LF, j + 1);
  }
  return false;
}
