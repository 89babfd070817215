/**
 * The value types of the config schema: each checks a JSON value, says what it expected, and reads
 * a flag's text. One definition per kind of value (HOST:PORT through protocol/host-port.ts).
 */
import { HOST_PORT_SYNTAX, parseHostPort } from '../protocol/host-port.js';
import type { Parsed, ValueType } from './engine.js';

/** Largest delay setTimeout honours (Node clamps larger ones to 1 ms with a warning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

function ok<T>(value: T): Parsed<T> {
  return { ok: true, value };
}
const no: Parsed<never> = { ok: false };

export type IntUnit = 'ms' | 'bytes' | 'count' | 'bits' | 'port' | 'bytes/s';

/** A whole number in [min, max]; `floor` names a standard's minimum in errors (RFC 5321 …). */
export function int(min: number, max: number, unit: IntUnit = 'count', floor?: string): ValueType<number> & { unit: IntUnit } {
  const range = max === Number.MAX_SAFE_INTEGER ? `at least ${min}` : `from ${min} to ${max}`;
  return {
    name: `integer ${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `${min}–${max}`}${unit === 'count' || unit === 'port' ? '' : ` (${unit})`}`,
    expected: `a whole number ${range}${floor ? ` (${floor})` : ''}`,
    unit,
    parse: (v) => (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? ok(v) : no),
    // '' and '1e3' are not numbers a user meant; leave them as text so the error shows them.
    fromText: (t) => (/^-?[0-9]+$/.test(t) ? Number(t) : t),
  };
}

/** A whole number in [min, max], or null (the feature's "none"). */
export function intOrNull(min: number, max: number, unit: IntUnit = 'count'): ValueType<number | null> {
  const i = int(min, max, unit);
  return {
    name: `${i.name} or null`,
    expected: `${i.expected}, or null`,
    parse: (v) => (v === null ? ok(null) : i.parse(v)),
    fromText: (t) => (t === 'null' ? null : (i.fromText?.(t) ?? t)),
  };
}

/** A duration in milliseconds that setTimeout can honour. */
export function ms(min: number): ValueType<number> & { unit: IntUnit } {
  return int(min, MAX_TIMER_MS, 'ms');
}

export const bool: ValueType<boolean> = {
  name: 'boolean',
  expected: 'true|false',
  parse: (v) => (typeof v === 'boolean' ? ok(v) : no),
  fromText: (t) => (t === 'true' ? true : t === 'false' ? false : t),
};

export function oneOf<const L extends readonly string[]>(list: L): ValueType<L[number]> {
  return {
    name: list.map((x) => `\`${x}\``).join(' | '),
    expected: list.join('|'),
    parse: (v) => (typeof v === 'string' && (list as readonly string[]).includes(v) ? ok(v as L[number]) : no),
  };
}

export const path: ValueType<string> = {
  name: 'path',
  expected: 'a file or directory path',
  parse: (v) => (typeof v === 'string' && v.length > 0 ? ok(v) : no),
};

/** A PEM file path that must come with its partner (cert and key). */
export const pemPath: ValueType<string> = { ...path, expected: 'a PEM file path (cert and key go together)' };

export const pathOrNull: ValueType<string | null> = {
  name: 'path or null',
  expected: 'a file path or null',
  parse: (v) => (v === null || (typeof v === 'string' && v.length > 0) ? ok(v) : no),
};

/** Free text of one line (no control characters), or null for "derived from another setting". */
export const textOrNull: ValueType<string | null> = {
  name: 'text or null',
  expected: 'one line of text (1 to 200 characters) or null',
  parse: (v) => (v === null || (typeof v === 'string' && v.length > 0 && v.length <= 200 && !/[\x00-\x1f\x7f]/.test(v)) ? ok(v) : no),
};

const NAME = /^[A-Za-z0-9.-]{1,253}$/;

export const hostName: ValueType<string> = {
  name: 'host name',
  expected: 'a host name',
  parse: (v) => (typeof v === 'string' && NAME.test(v) ? ok(v) : no),
};

/** A domain, lower-cased. */
export const domain: ValueType<string> = {
  name: 'domain',
  expected: 'a domain name',
  parse: (v) => (typeof v === 'string' && NAME.test(v) ? ok(v.toLowerCase()) : no),
};

/** A domain or `*` (a relayhost, the default route), lower-cased. */
export const domainOrStar: ValueType<string> = {
  name: 'domain or `*`',
  expected: 'a domain or *',
  parse: (v) => (v === '*' ? ok(v) : domain.parse(v)),
};

/** HOST:PORT, kept as the text (parsed again where it is used, with the same parser). */
export function hostPort(opts: { allowPortZero?: boolean } = {}): ValueType<string> {
  return {
    name: 'HOST:PORT',
    expected: HOST_PORT_SYNTAX,
    parse: (v) => {
      if (typeof v !== 'string') return no;
      const r = parseHostPort(v, opts);
      return r.ok ? ok(v) : { ok: false, expected: `${HOST_PORT_SYNTAX}: ${r.problem}` };
    },
  };
}

/** HOST:PORT or null (off). */
export function hostPortOrNull(): ValueType<string | null> {
  const hp = hostPort();
  return {
    name: 'HOST:PORT or null',
    expected: `${HOST_PORT_SYNTAX}, or null`,
    parse: (v) => (v === null ? ok(null) : hp.parse(v)),
  };
}

/**
 * A static route: `HOST:PORT`, or `HOST:PORT@NAME` where NAME is the name the certificate must
 * carry (SNI and `verify`), or the object `{ "address": "HOST:PORT", "name": "NAME" }`; kept as
 * the text `HOST:PORT[@NAME]` (split again with splitRoute where it is used).
 */
export const route: ValueType<string> = {
  name: 'HOST:PORT[@NAME] or { address, name }',
  expected: `${HOST_PORT_SYNTAX}, optionally @NAME (the certificate name), or { "address": HOST:PORT, "name": NAME }`,
  parse: (v) => {
    let text: unknown = v;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      if (Object.keys(o).some((k) => k !== 'address' && k !== 'name') || typeof o['address'] !== 'string') return no;
      if (o['name'] !== undefined && typeof o['name'] !== 'string') return no;
      text = typeof o['name'] === 'string' ? `${o['address']}@${o['name']}` : o['address'];
    }
    if (typeof text !== 'string') return no;
    const r = splitRoute(text);
    if (r.name !== null && !NAME.test(r.name)) return { ok: false, expected: `a host name after @ (got ${JSON.stringify(r.name)})` };
    const hp = parseHostPort(r.address, {});
    return hp.ok ? ok(text) : { ok: false, expected: `${HOST_PORT_SYNTAX}: ${hp.problem}` };
  },
};

/** `HOST:PORT@NAME` → address and name (null without @). */
export function splitRoute(text: string): { address: string; name: string | null } {
  const at = text.lastIndexOf('@');
  return at < 0 ? { address: text, name: null } : { address: text.slice(0, at), name: text.slice(at + 1) };
}
