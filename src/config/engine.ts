/**
 * The machinery under the config schema (schema.ts): node kinds, defaults, applying a JSON
 * document or a command-line flag onto a config, and errors that name the key and where its
 * value came from (a flag, a config file, or a library caller).
 *
 * Invariants: a config is only ever changed through apply(), so every value in it has passed its
 * node's type; applying never mutates its input (values are copied on the way); unknown keys are
 * refused naming the key and the allowed ones.
 */
import { ConfigError, type ConfigErrorCode } from '../errors.js';

/** Where a value came from; errors say it. */
export type ConfigSource =
  | { kind: 'default' }
  | { kind: 'object' }
  | { kind: 'file'; file: string }
  | { kind: 'flag'; flag: string; text: string };

export type Parsed<T> = { ok: true; value: T } | { ok: false; expected?: string };

/** A checked value: what it is called in the reference, what errors expect, how it is read. */
export interface ValueType<T> {
  /** The reference's "type" column. */
  readonly name: string;
  /** Error text after "expected". */
  readonly expected: string;
  /** Checks (and normalises: lower-cased domains) a JSON value. */
  parse(v: unknown): Parsed<T>;
  /** A flag's text → what parse() takes (numbers, booleans); absent: the text itself. */
  fromText?(text: string): unknown;
}

/** How a command-line flag maps onto its node (serve's flags are generated from these). */
export interface FlagSpec {
  /** '--relay-tls' (commander's attribute name is derived from it). */
  name: string;
  /** '<level>'; absent: a switch that sets `sets`. */
  arg?: string;
  /** Switches: the value set (true for --catch-all, false for --no-relay). */
  sets?: boolean;
  /** Help text; the key and its default are added. */
  help: string;
  /** Repeatable flags: add to the list (of the file), or replace it on the first use. */
  list?: 'append' | 'replace';
  /** The flag's own narrower type (--mx-tls takes no `implicit`). */
  type?: ValueType<unknown>;
  /** The flag text → the JSON applied at the node (an entry, a list element, a listener). */
  toJson?(text: string): { ok: true; value: unknown } | { ok: false; expected: string };
}

interface NodeBase {
  /** Meaning, for the reference and --help. */
  doc: string;
  flag?: FlagSpec;
}

export interface Leaf<T> extends NodeBase {
  kind: 'leaf';
  type: ValueType<T>;
  default: T | (() => T);
  /** The reference's default when the value depends on the machine. */
  defaultText?: string;
  /** In a list element: must be given (no default applies). */
  required?: boolean;
}

export interface Group<T> extends NodeBase {
  kind: 'group';
  fields: { [K in keyof T]-?: Node<T[K]> };
  /** Keys that were renamed: the message says what replaced them. */
  replaced?: Record<string, string>;
  /** A rule across fields, checked once the group is complete: the field it blames and why. */
  check?(v: T): { field: keyof T & string; expected: string } | null;
}

/** A group that may be switched off ("off", false or null → null). */
export interface Optional<T> extends NodeBase {
  kind: 'optional';
  group: Group<T>;
}

export interface MapNode<V> extends NodeBase {
  kind: 'map';
  key: ValueType<string>;
  value: ValueType<V>;
}

export interface ListNode<E> extends NodeBase {
  kind: 'list';
  element: ValueType<E> | Group<E>;
}

export type Node<T> =
  | Leaf<T>
  | ([T] extends [readonly (infer E)[]] ? ListNode<E> : never)
  | ([T] extends [Record<string, infer V>] ? MapNode<V> : never)
  | ([T] extends [object] ? Group<T> : never)
  | (null extends T ? Optional<Exclude<T, null>> : never);

/** The schema walker sees nodes without their type parameter. */
export type AnyNode = Leaf<unknown> | Group<Record<string, unknown>> | Optional<Record<string, unknown>> | MapNode<unknown> | ListNode<unknown>;

export function asAny(node: unknown): AnyNode {
  return node as AnyNode;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The default value of a node (fresh objects every call). */
export function defaults(n: AnyNode): unknown {
  switch (n.kind) {
    case 'leaf': {
      const d = n.default;
      return structuredClone(typeof d === 'function' ? (d as () => unknown)() : d);
    }
    case 'group':
      return Object.fromEntries(Object.entries(n.fields).map(([k, f]) => [k, defaults(asAny(f))]));
    case 'optional':
      return defaults(n.group);
    case 'map':
      return {};
    case 'list':
      return [];
  }
}

/** The fields of a group, in schema order. */
export function fieldsOf(g: Group<Record<string, unknown>>): Array<[string, AnyNode]> {
  return Object.entries(g.fields).map(([k, f]) => [k, asAny(f)]);
}

function show(v: unknown): string {
  return v === undefined ? 'undefined' : (JSON.stringify(v) ?? String(v));
}

export function where(source: ConfigSource): string {
  switch (source.kind) {
    case 'flag':
      return `${source.flag} ${source.text}`;
    case 'file':
      return `config file ${source.file}`;
    case 'object':
      return 'config';
    case 'default':
      return 'default';
  }
}

/** One error wording for every source: the flag or file first, then the key. */
export function configError(code: ConfigErrorCode, source: ConfigSource, key: string, message: string): ConfigError {
  const text = source.kind === 'flag' ? `${where(source)} is not valid: ${key}: ${message}` : `${where(source)}: ${message}`;
  return new ConfigError(text, { code, key, source: where(source) });
}

function invalid(source: ConfigSource, key: string, value: unknown, expected: string): ConfigError {
  const message = source.kind === 'flag' ? `expected ${expected}` : `${key} = ${show(value)} is not valid: expected ${expected}`;
  return configError('CONFIG_INVALID', source, key, message);
}

/** Where each value came from (dotted key → source), kept for rules across fields. */
export type Origins = Map<string, ConfigSource>;

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

/**
 * Applies `value` (JSON, or a flag's value) at node `n` over `current`, returning the new value.
 * Groups and maps merge into the current value; lists and leaves replace it.
 */
export function apply(n: AnyNode, current: unknown, value: unknown, path: string, source: ConfigSource, origins: Origins): unknown {
  switch (n.kind) {
    case 'leaf': {
      const r = n.type.parse(value);
      if (!r.ok) throw invalid(source, path, value, r.expected ?? n.type.expected);
      origins.set(path, source);
      return r.value;
    }
    case 'optional':
      if (value === 'off' || value === false || value === null) {
        origins.set(path, source);
        return null;
      }
      return apply(n.group, current ?? defaults(n.group), value, path, source, origins);
    case 'group': {
      const fields = fieldsOf(n);
      if (!isObject(value)) throw invalid(source, path || '(top level)', value, `an object { ${fields.map(([k]) => k).join(', ')} }`);
      for (const k of Object.keys(value)) {
        const instead = n.replaced?.[k];
        if (instead !== undefined) throw configError('CONFIG_UNKNOWN_KEY', source, join(path, k), `${join(path, k)} was replaced by ${instead}`);
        if (!(k in n.fields)) throw configError('CONFIG_UNKNOWN_KEY', source, join(path, k), `unknown key ${join(path, k)} (allowed: ${fields.map(([f]) => f).join(', ')})`);
      }
      const out: Record<string, unknown> = { ...(isObject(current) ? current : {}) };
      for (const [k, f] of fields) {
        const v = value[k];
        if (v !== undefined) out[k] = apply(f, out[k], v, join(path, k), source, origins);
        else if (f.kind === 'leaf' && f.required === true) throw invalid(source, join(path, k), null, f.type.expected);
      }
      const broken = n.check?.(out);
      if (broken) {
        const key = join(path, broken.field);
        throw invalid(origins.get(key) ?? source, key, out[broken.field], broken.expected);
      }
      return out;
    }
    case 'map': {
      if (!isObject(value)) throw invalid(source, path, value, `an object { ${n.key.name}: ${n.value.name} }`);
      const out: Record<string, unknown> = { ...(isObject(current) ? current : {}) };
      for (const [k, v] of Object.entries(value)) {
        const key = n.key.parse(k);
        if (!key.ok) throw invalid(source, join(path, k), k, key.expected ?? n.key.expected);
        const r = n.value.parse(v);
        if (!r.ok) throw invalid(source, join(path, k), v, r.expected ?? n.value.expected);
        out[key.value] = r.value;
        origins.set(join(path, key.value), source);
      }
      return out;
    }
    case 'list': {
      const el = n.element;
      const what = 'kind' in el ? `{ ${fieldsOf(el).map(([k]) => k).join(', ')} }` : el.name;
      if (!Array.isArray(value)) throw invalid(source, path, value, `a list of ${what}`);
      origins.set(path, source);
      return value.map((v: unknown, i) => {
        if ('kind' in el) return apply(el, defaults(el), v, `${path}[${i}]`, source, origins);
        const r = el.parse(v);
        if (!r.ok) throw invalid(source, `${path}[${i}]`, v, r.expected ?? el.expected);
        return r.value;
      });
    }
  }
}
