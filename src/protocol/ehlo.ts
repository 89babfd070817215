/**
 * EHLO capability parsing for the client and the checker (RFC 5321 §4.1.1.1).
 *
 * Invariants: keywords are matched exactly (upper-cased first word of each line after the first),
 * never by a regular expression over the whole reply, so "250-XSTARTTLS" is not STARTTLS.
 */
import type { Reply } from './reply.js';

export interface Capabilities {
  /** The greeting line of the EHLO reply (server name and text). */
  greeting: string;
  /** Keyword → parameters. */
  keywords: Map<string, string[]>;
}

export function parseEhloReply(r: Reply): Capabilities {
  const keywords = new Map<string, string[]>();
  const [first = '', ...rest] = r.lines;
  for (const line of rest) {
    const parts = line.trim().split(/\s+/).filter((p) => p.length > 0);
    const [kw, ...params] = parts;
    if (!kw) continue;
    // "AUTH=LOGIN PLAIN" is an old form some servers still send beside "AUTH LOGIN PLAIN".
    if (kw.toUpperCase().startsWith('AUTH=')) {
      const prev = keywords.get('AUTH') ?? [];
      keywords.set('AUTH', [...new Set([...prev, kw.slice(5).toUpperCase(), ...params.map((p) => p.toUpperCase())])]);
      continue;
    }
    const key = kw.toUpperCase();
    // AUTH may come in both forms, in either order: merge, so "AUTH=LOGIN" then "AUTH PLAIN"
    // keeps LOGIN (RFC 4954 §3 form plus the pre-standard one).
    if (key === 'AUTH') keywords.set('AUTH', [...new Set([...(keywords.get('AUTH') ?? []), ...params.map((p) => p.toUpperCase())])]);
    else keywords.set(key, params);
  }
  return { greeting: first, keywords };
}

export function has(caps: Capabilities, keyword: string): boolean {
  return caps.keywords.has(keyword);
}

/** SIZE limit the server announced (0 = no fixed limit), or null when SIZE is not offered. */
export function sizeLimit(caps: Capabilities): number | null {
  const p = caps.keywords.get('SIZE');
  if (!p) return null;
  const n = Number(p[0] ?? '0');
  return Number.isFinite(n) && n >= 0 ? n : 0;
}

export function authMechanisms(caps: Capabilities): string[] {
  return caps.keywords.get('AUTH') ?? [];
}
