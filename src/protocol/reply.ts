/**
 * SMTP replies (RFC 5321 §4.2): formatting for the server, incremental parsing for the client.
 *
 * Invariants: a formatted reply is one or more "CODE-text" lines and a last "CODE text" line,
 * each ending in CRLF, with no CR or LF inside text; enhanced status codes (RFC 3463) are part of
 * the text when given. The parser never throws: malformed lines come back as errors.
 */

export interface Reply {
  code: number;
  /** Enhanced status code (RFC 3463) such as '2.0.0', or null. */
  enhanced: string | null;
  /** Text lines without the code and enhanced code. */
  lines: string[];
  /**
   * The wire form, when it was computed once ahead (constant replies, `fixedReply`): formatReply
   * returns it as is. Never set by hand: it must equal what formatReply would build.
   */
  readonly wire?: string;
}

export function reply(code: number, enhanced: string | null, ...lines: string[]): Reply {
  return { code, enhanced, lines: lines.length ? lines : [''] };
}

/** A reply whose text never changes: formatted once, here, instead of at every send. */
export function fixedReply(code: number, enhanced: string | null, ...lines: string[]): Reply {
  const r = reply(code, enhanced, ...lines);
  return { ...r, wire: formatLines(r) };
}

function clean(text: string): string {
  // Nearly every text is clean: look before building a new string.
  return text.indexOf('\r') < 0 && text.indexOf('\n') < 0 ? text : text.replace(/[\r\n]/g, ' ');
}

export function formatReply(r: Reply): string {
  return r.wire ?? formatLines(r);
}

function formatLines(r: Reply): string {
  // RFC 3463 §2 / RFC 2034: the enhanced code is repeated on every line of a multi-line reply.
  const enh = r.enhanced ? r.enhanced + ' ' : '';
  let out = '';
  const n = r.lines.length;
  for (let i = 0; i < n; i++) {
    out += `${r.code}${i === n - 1 ? ' ' : '-'}${enh}${clean(r.lines[i] ?? '')}\r\n`;
  }
  return out;
}

/** Parsed reply line: `250-foo` → { code: 250, last: false, text: 'foo' }. */
export type ReplyLine = { ok: true; code: number; last: boolean; text: string } | { ok: false; line: string };

export function parseReplyLine(line: string): ReplyLine {
  if (line.length < 3 || !/^[2-5][0-9][0-9]$/.test(line.slice(0, 3))) return { ok: false, line };
  const code = Number(line.slice(0, 3));
  if (line.length === 3) return { ok: true, code, last: true, text: '' };
  const sep = line[3];
  if (sep !== ' ' && sep !== '-') return { ok: false, line };
  return { ok: true, code, last: sep === ' ', text: line.slice(4) };
}

const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)/;

/** Splits an enhanced status code off the front of a reply text, if one is there. */
export function splitEnhanced(code: number, text: string): { enhanced: string | null; text: string } {
  const m = ENHANCED.exec(text);
  // RFC 3463 §2: the class digit must match the reply's first digit.
  if (m && m[1] === String(code)[0]) return { enhanced: m[0].trim(), text: text.slice(m[0].length) };
  return { enhanced: null, text };
}

/** Accumulates reply lines into replies; a reply whose lines disagree on the code is an error. */
export class ReplyAssembler {
  private code = 0;
  private lines: string[] = [];
  private readonly maxLines: number;
  constructor(maxLines = 100) {
    this.maxLines = maxLines;
  }

  /** Feeds one line. Returns a complete reply, null when more lines are needed, or an error. */
  push(line: string): Reply | null | { error: string } {
    const p = parseReplyLine(line);
    if (!p.ok) return { error: `malformed reply line: ${JSON.stringify(line.slice(0, 80))}` };
    if (this.lines.length > 0 && p.code !== this.code) return { error: `reply code changed inside a multi-line reply (${this.code} then ${p.code})` };
    if (this.lines.length >= this.maxLines) return { error: 'reply has too many lines' };
    this.code = p.code;
    this.lines.push(p.text);
    if (!p.last) return null;
    const first = splitEnhanced(p.code, this.lines[0] ?? '');
    const enhanced = first.enhanced;
    const lines = this.lines.map((t, i) => (i === 0 ? first.text : enhanced ? splitEnhanced(p.code, t).text : t));
    const out: Reply = { code: p.code, enhanced, lines };
    this.lines = [];
    this.code = 0;
    return out;
  }

  get pending(): boolean {
    return this.lines.length > 0;
  }
}

export function replyText(r: Reply): string {
  return `${r.code}${r.enhanced ? ' ' + r.enhanced : ''} ${r.lines.join(' / ')}`.trim();
}
