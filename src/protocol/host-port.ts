/**
 * `HOST:PORT` text: the one parser, for the config (listeners, relay routes, DNS servers),
 * `send --server`, `check HOST[:PORT]` / `--dns` / `--mta-sts-endpoint`, and the relay.
 *
 * Invariants: pure (no node:* imports); a problem is returned as a value, never thrown, so each
 * caller names its own source (a flag, a config key) in the error it raises.
 *
 * Accepted: `host:port` and `[IPv6]:port`; when the caller has a default port also `host`,
 * `[IPv6]` and a bare IPv6 literal (`::1`, which cannot carry a port without brackets, RFC 3986
 * §3.2.2). A host name is dot-separated labels of letters, digits, `-` and `_` (at most 253
 * octets); a trailing dot is dropped. A port is 1–65535 in decimal (0 only with allowPortZero: a
 * listener asking the system for a free port).
 */

export interface HostPort {
  host: string;
  port: number;
}

export interface HostPortOptions {
  /** Port used when the text has none; without it a missing port is a problem. */
  defaultPort?: number;
  /** Accept port 0 (listeners: any free port). */
  allowPortZero?: boolean;
}

export type HostPortResult = ({ ok: true } & HostPort) | { ok: false; problem: string };

/** How the syntax is described in errors and help texts. */
export const HOST_PORT_SYNTAX = 'HOST:PORT (e.g. 127.0.0.1:2525, mx.example.org:25, [::1]:25)';

const HOST_NAME = /^(?=[^]{1,254}$)[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?$/;

export function parseHostPort(text: string, opts: HostPortOptions = {}): HostPortResult {
  let host: string;
  let portText: string | null = null;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0) return fail('the IPv6 address has no closing ]');
    host = text.slice(1, end);
    if (!isIpv6(host)) return fail(`${JSON.stringify(host)} is not an IPv6 address`);
    const rest = text.slice(end + 1);
    if (rest.startsWith(':')) portText = rest.slice(1);
    else if (rest !== '') return fail(`${JSON.stringify(rest)} after ] (expected :PORT)`);
  } else if (text.indexOf(':') !== text.lastIndexOf(':')) {
    // Two colons or more without brackets: a bare IPv6 literal, which has no room for a port.
    if (!isIpv6(text) || opts.defaultPort === undefined) return fail('an IPv6 address with a port goes in brackets: [IPv6]:PORT');
    host = text;
  } else {
    const colon = text.indexOf(':');
    host = colon < 0 ? text : text.slice(0, colon);
    if (colon >= 0) portText = text.slice(colon + 1);
    if (!HOST_NAME.test(host)) return fail(host === '' ? 'the host is missing' : `${JSON.stringify(host)} is not a host name or address`);
    host = host.replace(/\.$/, '');
  }
  if (portText === null) {
    if (opts.defaultPort === undefined) return fail('the port is missing');
    return { ok: true, host, port: opts.defaultPort };
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return fail(portText === '' ? 'the port is missing' : `port ${JSON.stringify(portText)} is not a number`);
  const port = Number(portText);
  const min = opts.allowPortZero === true ? 0 : 1;
  if (port < min || port > 65535) return fail(`port ${port} is out of range (${min}-65535)`);
  return { ok: true, host, port };
}

function fail(problem: string): HostPortResult {
  return { ok: false, problem };
}

/** RFC 4291 §2.2 text forms: eight groups, `::` once, an IPv4 tail; no zone index. */
export function isIpv6(text: string): boolean {
  if (!/^[0-9A-Fa-f:.]{2,45}$/.test(text)) return false;
  const halves = text.split('::');
  if (halves.length > 2) return false;
  let groups = 0;
  for (const [i, half] of halves.entries()) {
    if (half === '') continue;
    const parts = half.split(':');
    for (const [j, p] of parts.entries()) {
      const last = i === halves.length - 1 && j === parts.length - 1;
      if (last && p.includes('.')) {
        if (!isIpv4(p)) return false;
        groups += 2;
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(p)) groups += 1;
      else return false;
    }
  }
  return halves.length === 2 ? groups <= 7 : groups === 8;
}

function isIpv4(text: string): boolean {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
}
