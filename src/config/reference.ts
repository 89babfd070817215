/**
 * The configuration reference (docs/config.md), generated from the schema: one row per key with
 * its type, default, flag and meaning. `node --import tsx scripts/config-reference.ts > docs/config.md`
 * writes it; test/cli/config-reference.test.ts fails when the committed file differs.
 */
import { asAny, defaults, fieldsOf, type AnyNode } from './engine.js';
import { SCHEMA } from './schema.js';

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

const DURATIONS: Array<[number, string]> = [
  [86_400_000, 'd'],
  [3_600_000, 'h'],
  [60_000, 'min'],
  [1000, 's'],
];

/** 300000 → "300000 (5 min)"; 36700160 bytes → "36700160 (35 MiB)". */
function number(n: number, unit: string | undefined): string {
  if (unit === 'ms' && n > 0) {
    for (const [size, name] of DURATIONS) if (n % size === 0) return `${n} (${n / size} ${name})`;
  }
  if (unit === 'bytes' && n >= 1024) {
    if (n % (1024 * 1024) === 0) return `${n} (${n / (1024 * 1024)} MiB)`;
    if (n % 1024 === 0) return `${n} (${n / 1024} KiB)`;
  }
  return String(n);
}

function defaultText(n: AnyNode): string {
  if (n.kind === 'leaf' && n.defaultText !== undefined) return n.defaultText;
  const v = defaults(n);
  if (typeof v === 'number') return number(v, n.kind === 'leaf' && 'unit' in n.type ? String(n.type.unit) : undefined);
  return `\`${JSON.stringify(v)}\``;
}

function typeText(n: AnyNode): string {
  switch (n.kind) {
    case 'leaf':
      return n.type.name;
    case 'map':
      return `object { ${n.key.name} → ${n.value.name} }`;
    case 'list':
      return `list of ${'kind' in n.element ? `{ ${fieldsOf(n.element).map(([k]) => k).join(', ')} }` : n.element.name}`;
    case 'optional':
      return 'object or `"off"`';
    case 'group':
      return 'object';
  }
}

function flagText(n: AnyNode): string {
  const f = n.flag;
  if (!f) return '';
  return cell(`\`${f.name}${f.arg ? ' ' + f.arg : ''}\``);
}

function rows(n: AnyNode, path: string, out: string[]): void {
  if (n.kind === 'group' && path !== '') {
    // Groups are headings of their keys, except lists' element groups which are described inline.
    for (const [k, f] of fieldsOf(n)) rows(f, `${path}.${k}`, out);
    return;
  }
  if (n.kind === 'group') {
    for (const [k, f] of fieldsOf(n)) rows(f, k, out);
    return;
  }
  if (n.kind === 'optional') {
    out.push(`| \`${path}\` | ${typeText(n)} | on | ${flagText(n)} | ${cell(n.doc)} |`);
    for (const [k, f] of fieldsOf(n.group)) rows(f, `${path}.${k}`, out);
    return;
  }
  const doc = n.kind === 'list' && 'kind' in n.element ? `${n.doc} ${fieldsOf(n.element).map(([k, f]) => `\`${k}\`: ${f.doc}`).join(' ')}` : n.doc;
  const required = n.kind === 'leaf' && n.required === true;
  out.push(`| \`${path}\` | ${cell(typeText(n))} | ${required ? 'required' : cell(defaultText(n))} | ${flagText(n)} | ${cell(doc)} |`);
}

export function configReference(): string {
  const out = [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/schema.ts by `node --import tsx scripts/config-reference.ts > docs/config.md`; do not edit. -->',
    '',
    '`postseal serve` reads its defaults, then the JSON file of `--config FILE`, then its flags (a flag',
    'overrides the file; repeatable flags add to the file\'s lists and maps, `--dns` replaces them).',
    'Unknown keys are refused. A bad value is refused at start (exit status 2) with the key and',
    'where the value came from: `--tls-policy bank.example=strict is not valid: relay.tlsPolicy.bank.example: …`,',
    '`config file /etc/postseal.json: relay.tlsPolicy.bank.example = "strict" is not valid: …`.',
    '',
    '| key | type | default | flag | meaning |',
    '|---|---|---|---|---|',
  ];
  rows(asAny(SCHEMA), '', out);
  out.push('', 'Flags that are not keys: `--config FILE` (the JSON file).', '');
  return out.join('\n');
}
