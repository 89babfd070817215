/**
 * DSN (RFC 3461) ESMTP parameters: parsing and xtext. Pure, no node:* imports.
 *
 * Invariants: values are returned decoded (ENVID, the ORCPT address) and re-encoded with
 * `xtext()` when passed on; a parse error is `null`, never a partial value; NOTIFY=NEVER never
 * combines with another keyword (RFC 3461 §4.1).
 */

import type { Notify } from '../types.js';

export type { Notify, RecipientDsn } from '../types.js';
export const RET_VALUES = ['FULL', 'HDRS'] as const;
export type Ret = (typeof RET_VALUES)[number];

/** RFC 3461 §4: xtext = *( xchar / hexchar ); hexchar = "+" 2 uppercase HEX. Decoded or null. */
export function xtextDecode(s: string): string | null {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2b) {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) return null;
      const code = parseInt(hex, 16);
      // RFC 3461 §4.4 and §4.2: ENVID and the ORCPT address are printable text once decoded; a
      // control character (NUL above all: a PostgreSQL text column refuses it, so the message
      // could never be stored) is a malformed parameter, refused at MAIL/RCPT with a 501.
      if (code < 0x20 || code === 0x7f) return null;
      out += String.fromCharCode(code);
      i += 2;
    } else if (c >= 0x21 && c <= 0x7e && c !== 0x3d) {
      out += s[i];
    } else {
      return null;
    }
  }
  return out;
}

/** Encodes printable ASCII as xtext ("+", "=" and anything outside 33..126 become +XX). */
export function xtext(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    if (c >= 0x21 && c <= 0x7e && c !== 0x2b && c !== 0x3d) out += ch;
    else for (const b of new TextEncoder().encode(ch)) out += '+' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** RFC 3461 §4.3: RET=FULL|HDRS. */
export function parseRet(v: string | null): Ret | null {
  const u = (v ?? '').toUpperCase();
  return u === 'FULL' || u === 'HDRS' ? u : null;
}

/** RFC 3461 §4.4: ENVID=xtext, at most 100 characters (encoded); decoded, or null. */
export function parseEnvId(v: string | null): string | null {
  if (v === null || v.length === 0 || v.length > 100) return null;
  return xtextDecode(v);
}

/** RFC 3461 §4.1: NEVER alone, or a non-empty set of SUCCESS, FAILURE, DELAY (no repeats). */
export function parseNotify(v: string | null): Notify[] | null {
  if (v === null || v === '') return null;
  const words = v.toUpperCase().split(',');
  const out: Notify[] = [];
  for (const w of words) {
    if (w !== 'NEVER' && w !== 'SUCCESS' && w !== 'FAILURE' && w !== 'DELAY') return null;
    if (out.includes(w)) return null;
    out.push(w);
  }
  if (out.includes('NEVER') && out.length > 1) return null;
  return out;
}

/** RFC 3461 §4.2: ORCPT=addr-type ";" xtext, at most 500 characters; returns `type;decoded`. */
export function parseOrcpt(v: string | null): string | null {
  if (v === null || v.length > 500) return null;
  const semi = v.indexOf(';');
  if (semi <= 0) return null;
  const type = v.slice(0, semi);
  if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(type)) return null;
  const addr = xtextDecode(v.slice(semi + 1));
  if (addr === null || addr === '') return null;
  return `${type.toLowerCase()};${addr}`;
}

/** The ORCPT parameter value for passing `orcpt` (as parseOrcpt returns it) on. */
export function orcptParam(orcpt: string): string {
  const semi = orcpt.indexOf(';');
  return `${orcpt.slice(0, semi)};${xtext(orcpt.slice(semi + 1))}`;
}

/** MAIL parameters that pass RET/ENVID on to a DSN-capable server (RFC 3461 §4.3/§4.4). */
export function dsnMailParams(envId: string | null, ret: Ret | null): string[] {
  return [...(ret ? [`RET=${ret}`] : []), ...(envId !== null ? [`ENVID=${xtext(envId)}`] : [])];
}

/** RCPT parameters that pass NOTIFY/ORCPT on (RFC 3461 §4.1/§4.2). */
export function dsnRcptParams(notify: readonly Notify[] | null, orcpt: string | null): string[] {
  return [...(notify ? [`NOTIFY=${notify.join(',')}`] : []), ...(orcpt !== null ? [`ORCPT=${orcptParam(orcpt)}`] : [])];
}
