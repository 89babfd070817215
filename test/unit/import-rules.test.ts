/**
 * The import rules of ARCHITECTURE.md, checked on the source: every relative import and re-export
 * of src/ (type-only ones included: a circle of types is still a circle for a reader) is parsed,
 * and the test fails on
 * - an import circle between modules;
 * - an edge between rooms that the room order forbids (imports run downwards only);
 * - a node:* import in protocol/ (pure wire code).
 * The room order below is the architecture's picture read bottom-up; a room may import only
 * rooms listed before it (and itself). Files directly in src/ other than the composition root,
 * the config schema and the index (types.ts, errors.ts, log.ts) sit at the bottom with protocol/.
 * server/ is never imported by, and never imports, relay/, check/ or client/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const srcDir = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

/** Bottom first. Each entry may import itself and anything earlier in the list. */
const ROOM_ORDER = ['base', 'protocol', 'transport', 'tls', 'store', 'client', 'delivery', 'auth', 'policy', 'check', 'server', 'relay', 'config', 'serve', 'index', 'http', 'cli'] as const;
type Room = (typeof ROOM_ORDER)[number];
/** Rooms side by side that must not know each other although the order would let one import the other. */
const FORBIDDEN: ReadonlyArray<readonly [Room, Room]> = [
  ['server', 'check'],
  ['server', 'client'],
  ['server', 'relay'],
];

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function roomOf(file: string): Room {
  const rel = relative(srcDir, file).split('/');
  if (rel.length === 1) {
    const base = (rel[0] ?? '').replace(/\.ts$/, '');
    if (base === 'serve') return 'serve';
    if (base === 'config') return 'config';
    if (base === 'index') return 'index';
    return 'base';
  }
  const room = rel[0] as Room;
  if (!(ROOM_ORDER as readonly string[]).includes(room)) throw new Error(`unknown room ${rel[0] ?? ''} (${file}): add it to ROOM_ORDER`);
  return room;
}

const SPEC = /(?:^|[\s;])(?:import|export)\s[^'";]*?\sfrom\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  for (const m of text.matchAll(SPEC)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (spec !== undefined) out.push(spec);
  }
  return out;
}

function graph(): Map<string, { specs: string[]; deps: string[] }> {
  const g = new Map<string, { specs: string[]; deps: string[] }>();
  for (const f of walk(srcDir)) {
    const specs = importsOf(f);
    const deps = specs.filter((s) => s.startsWith('.')).map((s) => resolve(dirname(f), s.replace(/\.js$/, '.ts')));
    g.set(f, { specs, deps });
  }
  return g;
}

test('every relative import of src/ resolves to a source file', () => {
  const g = graph();
  const missing: string[] = [];
  for (const [f, { deps }] of g) for (const d of deps) if (!g.has(d)) missing.push(`${relative(srcDir, f)} -> ${relative(srcDir, d)}`);
  assert.deepEqual(missing, []);
});

test('no import circle in src/', () => {
  const g = graph();
  const state = new Map<string, 'open' | 'done'>();
  const circles: string[] = [];
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    stack.push(f);
    for (const d of g.get(f)?.deps ?? []) {
      if (!g.has(d)) continue;
      const s = state.get(d);
      if (s === 'open') circles.push([...stack.slice(stack.indexOf(d)), d].map((p) => relative(srcDir, p)).join(' -> '));
      else if (s === undefined) visit(d);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of [...g.keys()].sort()) if (!state.has(f)) visit(f);
  assert.deepEqual(circles, []);
});

test('imports run downwards between rooms', () => {
  const g = graph();
  const bad: string[] = [];
  for (const [f, { deps }] of g) {
    const from = roomOf(f);
    for (const d of deps) {
      const to = roomOf(d);
      if (from === to) continue;
      const upwards = ROOM_ORDER.indexOf(to) > ROOM_ORDER.indexOf(from);
      const forbidden = FORBIDDEN.some(([a, b]) => (a === from && b === to) || (a === to && b === from));
      if (upwards || forbidden) bad.push(`${relative(srcDir, f)} (${from}) -> ${relative(srcDir, d)} (${to})`);
    }
  }
  assert.deepEqual(bad, []);
});

test('protocol/ imports no node:* module', () => {
  const g = graph();
  const bad: string[] = [];
  for (const [f, { specs }] of g) {
    if (roomOf(f) !== 'protocol') continue;
    for (const s of specs) if (s.startsWith('node:') || !s.startsWith('.')) bad.push(`${relative(srcDir, f)}: ${s}`);
  }
  assert.deepEqual(bad, []);
});
