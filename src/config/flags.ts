/**
 * serve's command-line flags, read from the schema: each flag is written once, on the key it sets
 * (schema.ts), and applied through the same checks as the config file, with errors that name the
 * flag and its text (`--tls-policy bank.example=strict is not valid: relay.tlsPolicy.bank.example: …`).
 *
 * Invariants: flags are applied in schema order after the config file; a repeatable flag adds to
 * the file's list or map (`list: 'replace'` lists: the first use replaces it); a flag on a part of a
 * listener that is off is refused rather than silently dropped.
 */
import { apply, asAny, configError, fieldsOf, type AnyNode, type ConfigSource, type FlagSpec, type Origins } from './engine.js';
import { SCHEMA } from './schema.js';

export interface FlagEntry {
  /** Dotted key path ('relay.tlsPolicy'). */
  path: string[];
  node: AnyNode;
  spec: FlagSpec;
  /** Commander's attribute name ('--tls-policy' → tlsPolicy, '--no-relay' → relay). */
  attr: string;
  repeatable: boolean;
}

function attrOf(name: string): string {
  return name.replace(/^--(no-)?/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function walk(n: AnyNode, path: string[], out: FlagEntry[]): void {
  if (n.flag) out.push({ path, node: n, spec: n.flag, attr: attrOf(n.flag.name), repeatable: n.kind === 'map' || n.kind === 'list' });
  if (n.kind === 'group') for (const [k, f] of fieldsOf(n)) walk(f, [...path, k], out);
  if (n.kind === 'optional') for (const [k, f] of fieldsOf(n.group)) walk(f, [...path, k], out);
}

/** Every flag of serve, in schema order. */
export function serveFlags(): FlagEntry[] {
  const out: FlagEntry[] = [];
  walk(asAny(SCHEMA), [], out);
  return out;
}

function getAt(root: unknown, path: readonly string[]): unknown {
  let o = root;
  for (const k of path) o = (o as Record<string, unknown> | null)?.[k];
  return o;
}

function setAt(root: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let o = root;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string, unknown>;
  const last = path[path.length - 1];
  if (last !== undefined) o[last] = value;
}

/** The flag's text → the JSON applied at its node. */
function jsonOf(e: FlagEntry, text: string, source: ConfigSource, key: string): unknown {
  if (e.spec.toJson) {
    const r = e.spec.toJson(text);
    if (!r.ok) throw configError('CONFIG_INVALID', source, key, `expected ${r.expected}`);
    return r.value;
  }
  const n = e.node;
  const type = e.spec.type ?? (n.kind === 'leaf' ? n.type : n.kind === 'list' && !('kind' in n.element) ? n.element : null);
  const value = type?.fromText ? type.fromText(text) : text;
  if (e.spec.type && !e.spec.type.parse(value).ok) throw configError('CONFIG_INVALID', source, key, `expected ${e.spec.type.expected}`);
  return value;
}

/**
 * Applies commander's options object (`{ tlsPolicy: ['a=verify'], relay: false, … }`) onto `cfg`.
 * Returns a new object; `origins` records which flag set each key.
 */
export function applyFlags<T extends object>(cfg: T, flags: Record<string, unknown>, origins: Origins): T {
  const out = structuredClone(cfg) as unknown as Record<string, unknown>;
  for (const e of serveFlags()) {
    const given = flags[e.attr];
    if (given === undefined) continue;
    const key = e.path.join('.');
    if (e.spec.arg === undefined) {
      // A switch: commander gives `relay: true` for an absent --no-relay, so only `sets` counts.
      if (given !== e.spec.sets) continue;
      setAt(out, e.path, apply(e.node, getAt(out, e.path), e.spec.sets, key, { kind: 'flag', flag: e.spec.name, text: '' }, origins));
      continue;
    }
    const texts = Array.isArray(given) ? given.map(String) : [String(given)];
    for (const [i, text] of texts.entries()) {
      const source: ConfigSource = { kind: 'flag', flag: e.spec.name, text };
      const parent = getAt(out, e.path.slice(0, -1));
      if (parent === null) {
        const off = e.path.slice(0, -1).join('.');
        throw configError('CONFIG_INVALID', source, key, `${off} is off${origins.get(off)?.kind === 'flag' ? ' on the command line' : ''}`);
      }
      const value = jsonOf(e, text, source, key);
      const current = getAt(out, e.path);
      let next: unknown = value;
      if (e.node.kind === 'list') {
        const base = e.spec.list === 'replace' && i === 0 ? [] : Array.isArray(current) ? current : [];
        next = [...base, value];
      }
      setAt(out, e.path, apply(e.node, current, next, key, source, origins));
    }
  }
  return out as T;
}
