/**
 * The sender test's result page (issue 14 item 6): `GET /sender-test/ID` shows the report that
 * server/sender-test.ts stored for a message sent to tls-test@DOMAIN; `GET /sender-test/ID.json`
 * (or `Accept: application/json`) gives it as JSON. Public by its unguessable id (128 random bits),
 * so no login: the id is the capability, as in the reply the sender got.
 *
 * Invariants: only ids of the shape the server makes are looked up (no path from the request
 * reaches the file system); every value from the report is HTML-escaped; no script, no inline
 * style (the console's Content-Security-Policy applies).
 */
import { Hono } from 'hono';
import { readSenderTestReport, reportLines, type SenderTestReport } from '../server/sender-test.js';

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}

export function senderTestPage(r: SenderTestReport): string {
  const t = r.tls;
  const rows: Array<[string, string]> = [
    ['Received', r.receivedAt],
    ['Test', r.variant],
    ['Envelope sender', r.mailFrom],
    ['Client', `${r.client.address} (EHLO ${r.client.ehlo})`],
    ['TLS', t === null ? 'none (plaintext)' : `${t.protocol}, ${t.cipher}${t.group !== null ? `, ${t.group}` : ''}`],
    ['SNI', t === null ? '-' : (t.sni ?? 'none sent')],
    ['Pipelining', r.pipelined ? 'yes' : 'no'],
    ['Hostile behaviour applied', r.hostile ?? 'none'],
    ['Authentication', r.auth === null ? 'not verified' : `SPF ${r.auth.spf}; DKIM ${r.auth.dkim.join(', ') || 'none'}; DMARC ${r.auth.dmarc}`],
    ['Automatic reply', r.reply.reason],
  ];
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8"><title>postseal sender test</title></head><body>',
    `<h1>Sender test: ${esc(r.variant)}</h1>`,
    '<table>',
    ...rows.map(([k, v]) => `<tr><th scope="row">${esc(k)}</th><td>${esc(v)}</td></tr>`),
    '</table>',
    '<h2>Findings</h2>',
    '<ul>',
    ...r.findings.map((f) => `<li class="${esc(f.severity)}"><strong>${esc(f.severity)}</strong>: ${esc(f.text)}</li>`),
    '</ul>',
    `<pre>${esc(reportLines(r).join('\n'))}</pre>`,
    `<p><a href="/sender-test/${esc(r.id)}.json">JSON</a></p>`,
    '</body></html>',
    '',
  ].join('\n');
}

/** The sub-app; mount it ahead of any login middleware (`app.route('/', senderTestApp(dataDir))`). */
export function senderTestApp(dataDir: string): Hono {
  const app = new Hono();
  app.get('/sender-test/:id', (c) => {
    const raw = c.req.param('id');
    const asJson = raw.endsWith('.json') || /application\/json/.test(c.req.header('accept') ?? '');
    const id = raw.replace(/\.json$/, '');
    const r = readSenderTestReport(dataDir, id);
    if (r === null) return asJson ? c.json({ error: 'no such sender test report' }, 404) : c.text('no such sender test report\n', 404);
    // Reports name client addresses: not for shared caches.
    c.header('cache-control', 'private, no-store');
    return asJson ? c.json(r) : c.html(senderTestPage(r));
  });
  return app;
}
