/**
 * Delivery target text (issue 12): `store`, `lmtp:HOST:PORT`, `lmtp:unix:PATH`, `maildir:DIR`,
 * `webhook:URL`, and the `--deliver DOMAIN=TARGET` flag value.
 *
 * Invariants: pure (no node:* imports); a problem is returned as a value, never thrown, so each
 * caller names its own source (a flag, a config key) in the error it raises. HOST:PORT goes
 * through the one parser (protocol/host-port.ts: IPv6 in brackets, the port required: LMTP has
 * no default port, RFC 2033 §4). `lmtp:unix:` always means a socket path (a host named `unix`
 * would be written as `lmtp:unix.:PORT`).
 */
import { HOST_PORT_SYNTAX, parseHostPort } from '../protocol/host-port.js';
import type { TargetSpec } from './types.js';

/** How the syntax is described in errors and help texts. */
export const TARGET_SYNTAX = 'store | lmtp:HOST:PORT | lmtp:unix:PATH | maildir:DIR | webhook:URL';

export type TargetSpecResult = { ok: true; spec: TargetSpec } | { ok: false; problem: string };

export function parseTargetSpec(text: string): TargetSpecResult {
  const t = text.trim();
  if (t === '') return fail(`the delivery target is empty (expected ${TARGET_SYNTAX})`);
  if (t === 'store') return { ok: true, spec: { kind: 'store' } };
  const colon = t.indexOf(':');
  const kind = colon < 0 ? t : t.slice(0, colon);
  const rest = colon < 0 ? '' : t.slice(colon + 1);
  switch (kind) {
    case 'lmtp': {
      if (rest.startsWith('unix:')) {
        const path = rest.slice('unix:'.length);
        const bad = badPath(path, 'socket path');
        return bad !== null ? fail(`lmtp:unix: ${bad}`) : { ok: true, spec: { kind: 'lmtp', socket: path } };
      }
      if (rest === '') return fail(`lmtp needs HOST:PORT or unix:PATH (e.g. lmtp:127.0.0.1:24, lmtp:unix:/run/dovecot/lmtp)`);
      const hp = parseHostPort(rest);
      if (!hp.ok) return fail(`lmtp:${rest}: ${hp.problem} (expected ${HOST_PORT_SYNTAX} or unix:PATH)`);
      return { ok: true, spec: { kind: 'lmtp', host: hp.host, port: hp.port } };
    }
    case 'maildir': {
      const bad = badPath(rest, 'directory');
      return bad !== null ? fail(`maildir: ${bad}`) : { ok: true, spec: { kind: 'maildir', dir: rest } };
    }
    case 'webhook': {
      if (rest === '') return fail('webhook needs a URL (e.g. webhook:https://app.example.org/mail)');
      let url: URL;
      try {
        url = new URL(rest);
      } catch {
        return fail(`webhook: ${JSON.stringify(rest)} is not a URL`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return fail(`webhook: ${JSON.stringify(url.protocol)} is not http: or https:`);
      if (url.hostname === '') return fail(`webhook: ${JSON.stringify(rest)} has no host`);
      if (url.hash !== '') return fail(`webhook: ${JSON.stringify(rest)} has a #fragment, which is never sent`);
      return { ok: true, spec: { kind: 'webhook', url: url.href } };
    }
    default:
      return fail(`unknown delivery target ${JSON.stringify(kind)} (expected ${TARGET_SYNTAX})`);
  }
}

export type DeliverFlagResult = { ok: true; domain: string; target: TargetSpec } | { ok: false; problem: string };

const DOMAIN = /^(?=[^]{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** `DOMAIN=TARGET` (the `serve --deliver` flag); the domain is lower-cased, a trailing dot dropped. */
export function parseDeliverFlag(text: string): DeliverFlagResult {
  const eq = text.indexOf('=');
  if (eq < 0) return fail(`expected DOMAIN=TARGET (TARGET: ${TARGET_SYNTAX})`);
  const domain = text.slice(0, eq).trim().toLowerCase().replace(/\.$/, '');
  if (domain === '') return fail('the domain before = is missing');
  if (!DOMAIN.test(domain)) return fail(`${JSON.stringify(domain)} is not a domain name`);
  const t = parseTargetSpec(text.slice(eq + 1));
  if (!t.ok) return t;
  return { ok: true, domain, target: t.spec };
}

/** Text form of a spec (the inverse of parseTargetSpec), for logs and `queue` output. */
export function formatTargetSpec(spec: TargetSpec): string {
  switch (spec.kind) {
    case 'store':
      return 'store';
    case 'lmtp':
      return 'socket' in spec ? `lmtp:unix:${spec.socket}` : `lmtp:${spec.host.includes(':') ? `[${spec.host}]` : spec.host}:${spec.port}`;
    case 'maildir':
      return `maildir:${spec.dir}`;
    case 'webhook':
      return `webhook:${spec.url}`;
  }
}

function badPath(path: string, what: string): string | null {
  if (path === '') return `the ${what} is missing`;
  if (path.includes('\0')) return `the ${what} contains NUL`;
  return null;
}

function fail(problem: string): { ok: false; problem: string } {
  return { ok: false, problem };
}
