/**
 * Our DKIM keys as the world sees them: for every selector we hold a key for (the active ones and
 * the ones kept published after a rotation), `SELECTOR._domainkey.DOMAIN` TXT is looked up and
 * compared with the record made from our key file (auth/dkim-keys.ts dnsRecord, the same text
 * `postseal dns-records` prints). Each selector is one of: match, different-key, missing,
 * malformed, lookup-failed; every result that is not a match carries the fix (the zone line).
 *
 * Invariants: all DNS through the one resolver given; a failed lookup (SERVFAIL, timeout) is
 * "lookup-failed", never read as "missing"; the key comparison is on the decoded key bytes and
 * the key type (k=, default rsa: RFC 6376 §3.6.1), so folding and spacing in the published text
 * do not matter; the record parser is the tag-list grammar of RFC 6376 §3.2.
 */
import { zoneLine, type DkimAlgorithm } from '../auth/dkim-keys.js';
import type { DnsResolver } from '../policy/dns.js';

/** What the checker needs of a key (a DkimKey has it). */
export interface DkimKeyInfo {
  domain: string;
  selector: string;
  algorithm: DkimAlgorithm;
  active: boolean;
  record: string[];
}

export type DkimSelectorStatus = 'match' | 'different-key' | 'missing' | 'malformed' | 'lookup-failed';

export interface DkimSelectorResult {
  selector: string;
  /** Owner name queried, e.g. ed202611._domainkey.example.org. */
  name: string;
  algorithm: DkimAlgorithm;
  /** Our key signs with it now (else: kept published for mail signed earlier). */
  active: boolean;
  status: DkimSelectorStatus;
  /** The TXT text found (strings joined), or null. */
  published: string | null;
  /** What is wrong, or null for a match. */
  detail: string | null;
  /** The zone line to publish (null for a match). */
  fix: string | null;
}

export interface DkimCheck {
  /** The data directory the keys came from (null: not checked). */
  source: string | null;
  selectors: DkimSelectorResult[];
}

/** RFC 6376 §3.2 tag list: `tag=value; …`; null when a tag is repeated or a tag name is invalid. */
export function parseTagList(text: string): Map<string, string> | null {
  const tags = new Map<string, string>();
  for (const part of text.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) return null;
    const name = part.slice(0, eq).trim();
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(name) || tags.has(name)) return null;
    tags.set(name, part.slice(eq + 1).replace(/[ \t\r\n]+/g, ' ').trim());
  }
  return tags;
}

/** The key of a DKIM key record (RFC 6376 §3.6.1), or why it is not one. */
export function parseDkimKeyRecord(text: string): { ok: true; algorithm: string; key: Buffer; revoked: boolean } | { ok: false; error: string } {
  const tags = parseTagList(text);
  if (tags === null) return { ok: false, error: 'not a tag=value list (or a tag repeated)' };
  // RFC 6376 §3.6.1: v= is optional but, if present, must be first and DKIM1.
  const v = tags.get('v');
  if (v !== undefined && (v !== 'DKIM1' || [...tags.keys()][0] !== 'v')) return { ok: false, error: `v=${v}: must be the first tag and DKIM1` };
  const p = tags.get('p');
  if (p === undefined) return { ok: false, error: 'no p= tag (the public key)' };
  const b64 = p.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) return { ok: false, error: 'p= is not base64' };
  const algorithm = (tags.get('k') ?? 'rsa').toLowerCase();
  // An empty p= is a revoked key (RFC 6376 §3.6.1).
  return { ok: true, algorithm, key: Buffer.from(b64, 'base64'), revoked: b64 === '' };
}

function compare(ours: DkimKeyInfo, txt: string[]): { status: DkimSelectorStatus; published: string | null; detail: string | null } {
  const mine = parseDkimKeyRecord(ours.record.join(''));
  if (!mine.ok) throw new Error(`our own record does not parse: ${mine.error}`);
  // Other TXT at the name is not ours to judge; several key records are a fault: RFC 6376
  // §3.6.2.2, TXT RRs must be unique per selector name, with several "the results are undefined".
  const keyish = txt.filter((t) => /(^|;)\s*(v=DKIM1|p=|k=)/.test(t));
  if (txt.length === 0 || keyish.length === 0) return { status: 'missing', published: txt.length > 0 ? txt.join(' | ') : null, detail: `no DKIM key record at ${ours.selector}._domainkey.${ours.domain}` };
  const published = keyish.join(' | ');
  if (keyish.length > 1) return { status: 'malformed', published, detail: `${keyish.length} key records at one name: the result is undefined (RFC 6376 §3.6.2.2); keep one` };
  const theirs = parseDkimKeyRecord(keyish[0] ?? '');
  if (!theirs.ok) return { status: 'malformed', published, detail: theirs.error };
  if (theirs.revoked) return { status: 'different-key', published, detail: 'the published key is revoked (empty p=): our signatures with it fail' };
  if (theirs.algorithm !== mine.algorithm) return { status: 'different-key', published, detail: `published k=${theirs.algorithm}, our key is ${mine.algorithm}` };
  if (!theirs.key.equals(mine.key)) return { status: 'different-key', published, detail: 'the published p= is not the public half of our key: our signatures with this selector fail' };
  return { status: 'match', published, detail: null };
}

/** Looks up every selector's record (in parallel) and compares it with our key. */
export async function checkDkimKeys(keys: readonly DkimKeyInfo[], resolver: Pick<DnsResolver, 'txt'>): Promise<DkimSelectorResult[]> {
  return Promise.all(
    keys.map(async (k): Promise<DkimSelectorResult> => {
      const name = `${k.selector}._domainkey.${k.domain}`;
      const base = { selector: k.selector, name, algorithm: k.algorithm, active: k.active };
      let txt: string[];
      try {
        txt = await resolver.txt(name);
      } catch (e) {
        return { ...base, status: 'lookup-failed', published: null, detail: e instanceof Error ? e.message : String(e), fix: null };
      }
      const c = compare(k, txt);
      return { ...base, ...c, fix: c.status === 'match' ? null : zoneLine(k) };
    }),
  );
}
