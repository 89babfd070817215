// Shared helpers of the console pages (plain ES module, served as is: no build step).
// Invariants: no inline scripts or styles (the page CSP is script-src 'self'); every
// state-changing request carries the CSRF token of the page shell's <meta name="csrf-token">;
// everything shown comes from /api/v1 of the same origin and is rendered as text by Preact
// (never innerHTML), so message or report content cannot inject markup.
import { h, render } from '/assets/vendor/preact.js';
import htm from '/assets/vendor/htm.js';

export const html = htm.bind(h);

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute('content') || '' : '';
}

/** fetch against the JSON API; throws an Error with the server's message on non-2xx. */
export async function api(path, opts = {}) {
  const headers = { Accept: 'application/json', ...(opts.headers || {}) };
  const method = opts.method || 'GET';
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrfToken();
  let body;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  }
  const res = await fetch(path, { method, headers, body, credentials: 'same-origin' });
  if (res.status === 401) {
    location.href = '/login?next=' + encodeURIComponent(location.pathname);
    throw new Error('not logged in');
  }
  const type = res.headers.get('content-type') || '';
  const data = type.includes('json') ? await res.json() : await res.text();
  if (!res.ok) {
    const msg = data && typeof data === 'object' ? (data.error && (data.error.message || data.error)) || data.message : data;
    throw new Error(`${res.status} ${typeof msg === 'string' ? msg : res.statusText}`);
  }
  return data;
}

const PAGES = [
  ['/', 'Dashboard'],
  ['/check', 'Checker'],
  ['/messages', 'Messages'],
  ['/queue', 'Queue'],
];

export function Nav({ active }) {
  return html`<header class="top">
    <a class="brand" href="/">postseal</a>
    <nav>${PAGES.map(([href, label]) => html`<a href=${href} class=${active === href ? 'active' : ''}>${label}</a>`)}</nav>
    <form method="post" action="/logout" class="logout">
      <input type="hidden" name="_csrf" value=${csrfToken()} />
      <button type="submit" class="link">Log out</button>
    </form>
  </header>`;
}

export function mount(active, Page) {
  const root = document.getElementById('app');
  render(html`<${Nav} active=${active} /><main><${Page} /></main>`, root);
}

export function ErrorBox({ error }) {
  return error ? html`<p class="error" role="alert">${String(error.message || error)}</p>` : null;
}

export function fmtDate(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function fmtBytes(n) {
  if (typeof n !== 'number') return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** A TLS badge: version (and cipher as a tooltip), or "plaintext". */
export function TlsBadge({ tls }) {
  if (!tls || !tls.protocol) return html`<span class="badge bad">plaintext</span>`;
  const cls = tls.protocol === 'TLSv1.3' ? 'good' : tls.protocol === 'TLSv1.2' ? 'ok' : 'bad';
  return html`<span class=${'badge ' + cls} title=${tls.cipher || ''}>${tls.protocol}</span>`;
}

/** pass/fail/none verdict badge. */
export function Verdict({ label, result }) {
  const r = result || 'none';
  const cls = r === 'pass' ? 'good' : r === 'none' || r === 'neutral' ? 'muted' : r.endsWith('error') ? 'warn' : 'bad';
  return html`<span class=${'badge ' + cls}>${label}=${r}</span>`;
}

export function AuthVerdicts({ auth }) {
  if (!auth) return html`<span class="muted">not verified</span>`;
  const dkim = auth.dkim && auth.dkim.length ? auth.dkim[0].result : 'none';
  return html`<span class="verdicts"><${Verdict} label="spf" result=${auth.spf && auth.spf.result} /> <${Verdict} label="dkim" result=${dkim} /> <${Verdict} label="dmarc" result=${auth.dmarc && auth.dmarc.result} /></span>`;
}
