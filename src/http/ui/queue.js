// The delivery queue (/queue): one row per (message, recipient) with the last attempt's TLS outcome
// and the policy level asked, the attempts on demand, Retry and Delete (CSRF header via api()).
import { useState, useEffect } from '/assets/vendor/preact-hooks.js';
import { html, api, mount, ErrorBox, fmtDate } from './common.js';

function listOf(d) {
  if (Array.isArray(d)) return d;
  return (d && (d.queue || d.entries || d.items)) || [];
}

function TlsOutcome({ tls }) {
  if (!tls) return html`<span class="muted">no connection yet</span>`;
  const ok = tls.protocol && tls.levelReached !== 'none';
  // No protocol and a reason: either plaintext SMTP or no session at all (whyNot says which).
  return html`<span class=${'badge ' + (tls.verified ? 'good' : ok ? 'ok' : 'bad')}>${tls.protocol || 'no TLS'}</span>
    <span class="small"> policy ${tls.levelAsked} → reached ${tls.levelReached}${tls.host ? ' at ' + tls.host : ''}${tls.whyNot ? ' (' + tls.whyNot + ')' : ''}</span>`;
}

function Attempts({ id }) {
  const [d, setD] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => { api('/api/v1/queue/' + encodeURIComponent(id)).then(setD).catch(setError); }, [id]);
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!d) return html`<span class="muted">Loading…</span>`;
  const attempts = d.attempts || [];
  if (!attempts.length) return html`<span class="muted">No attempt yet.</span>`;
  return html`<table class="list attempts"><thead><tr><th>at</th><th>recipient</th><th>outcome</th><th>TLS</th><th>error</th></tr></thead>
    <tbody>${attempts.map((a) => html`<tr><td>${fmtDate(a.at)}</td><td>${a.recipient}</td><td>${a.outcome}</td><td><${TlsOutcome} tls=${a.tls} /></td><td class="small">${a.error || ''}</td></tr>`)}</tbody></table>`;
}

function Queue() {
  const [rows, setRows] = useState(null);
  const [open, setOpen] = useState({});
  const [error, setError] = useState(null);
  const [note, setNote] = useState('');
  const load = () => api('/api/v1/queue').then((d) => setRows(listOf(d))).catch(setError);
  useEffect(() => { load(); }, []);

  const act = async (what, id) => {
    setError(null); setNote('');
    try {
      if (what === 'retry') await api('/api/v1/queue/' + encodeURIComponent(id) + '/retry', { method: 'POST' });
      else {
        if (!confirm('Delete queued message ' + id + '?')) return;
        await api('/api/v1/queue/' + encodeURIComponent(id), { method: 'DELETE' });
      }
      setNote(`${what === 'retry' ? 'Retry scheduled' : 'Deleted'}: ${id}`);
      await load();
    } catch (e) { setError(e); }
  };

  return html`<h1>Queue</h1>
    <${ErrorBox} error=${error} />
    ${note ? html`<p class="note" role="status">${note}</p>` : null}
    ${rows === null ? html`<p class="muted">Loading…</p>` : rows.length === 0 ? html`<p class="muted">The queue is empty.</p>` : html`
    <table class="list queue"><thead><tr><th>id</th><th>from</th><th>recipient</th><th>status</th><th>attempts</th><th>next</th><th>last TLS outcome / policy</th><th>last error</th><th></th></tr></thead>
      <tbody>${rows.map((r) => html`<tr data-id=${r.id} data-status=${r.status}>
        <td><code>${r.id}</code></td><td>${r.mailFrom || '<>'}</td><td>${r.recipient}${r.target ? html`<div class="small">via ${r.target}</div>` : null}</td>
        <td>${r.status}${r.requireTls ? ' · REQUIRETLS' : ''}</td><td>${r.attempts}</td><td>${fmtDate(r.nextAttemptAt)}</td>
        <td><${TlsOutcome} tls=${r.lastTls} />
          <div><button class="link" type="button" onClick=${() => setOpen({ ...open, [r.id + r.recipient]: !open[r.id + r.recipient] })}>attempts</button></div>
          ${open[r.id + r.recipient] ? html`<${Attempts} id=${r.id} />` : null}</td>
        <td class="small">${r.lastError || ''}</td>
        <td class="actions">${r.status === 'queued' || r.status === 'deferred' ? html`
          <button type="button" class="retry" onClick=${() => act('retry', r.id)}>Retry</button>
          <button type="button" class="delete danger" onClick=${() => act('delete', r.id)}>Delete</button>` : null}</td>
      </tr>`)}</tbody></table>`}`;
}

mount('/queue', Queue);
