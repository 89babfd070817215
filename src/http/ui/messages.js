// Received messages (/messages): from, to, when, TLS version/cipher, SPF/DKIM/DMARC verdicts.
// Data: GET /api/v1/messages (the fields of `mailbox list --json`).
import { useState, useEffect } from '/assets/vendor/preact-hooks.js';
import { html, api, mount, ErrorBox, fmtDate, fmtBytes, TlsBadge, AuthVerdicts } from './common.js';

function listOf(d) {
  if (Array.isArray(d)) return d;
  return (d && (d.messages || d.items)) || [];
}

function Messages() {
  const [list, setList] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => { api('/api/v1/messages').then((d) => setList(listOf(d))).catch(setError); }, []);
  return html`<h1>Messages</h1>
    <${ErrorBox} error=${error} />
    ${list === null ? html`<p class="muted">Loading…</p>` : list.length === 0 ? html`<p class="muted">No messages yet.</p>` : html`
    <table class="list messages"><thead><tr><th>received</th><th>from</th><th>to</th><th>TLS</th><th>cipher</th><th>authentication</th><th>size</th></tr></thead>
      <tbody>${list.map((m) => html`<tr data-id=${m.id}>
        <td><a href=${'/messages/' + encodeURIComponent(m.id)}>${fmtDate(m.receivedAt)}</a></td>
        <td>${m.mailFrom || '<>'}</td>
        <td>${(m.recipients || []).join(', ')}</td>
        <td><${TlsBadge} tls=${m.tls} /></td>
        <td class="small">${m.tls ? m.tls.cipher : ''}</td>
        <td><${AuthVerdicts} auth=${m.authResults} /></td>
        <td>${fmtBytes(m.size)}</td></tr>`)}</tbody></table>`}`;
}

mount('/messages', Messages);
