// One message (/messages/ID): header fields, TLS facts, authentication results, the text body,
// the HTML body in an <iframe sandbox=""> (no scripts, opaque origin: message HTML never runs in
// the console's origin; its src answers with a CSP sandbox header as well), and the raw link.
import { useState, useEffect } from '/assets/vendor/preact-hooks.js';
import { html, api, mount, ErrorBox, fmtDate, fmtBytes, TlsBadge, Verdict } from './common.js';

function idFromPath() {
  const m = /^\/messages\/([^/]+)$/.exec(location.pathname);
  return m ? decodeURIComponent(m[1]) : '';
}

function Auth({ auth }) {
  if (!auth) return html`<p class="muted">Not verified (submission, verification off, or older mail).</p>`;
  return html`<table class="kv"><tbody>
    <tr><th>SPF</th><td><${Verdict} label="spf" result=${auth.spf.result} /> ${auth.spf.domain || ''} <span class="muted">${auth.spf.comment || ''}</span></td></tr>
    ${(auth.dkim.length ? auth.dkim : [{ result: 'none' }]).map((d) => html`<tr><th>DKIM</th><td><${Verdict} label="dkim" result=${d.result} /> ${d.domain ? `d=${d.domain}` : ''} ${d.selector ? `s=${d.selector}` : ''} <span class="muted">${d.comment || ''}</span></td></tr>`)}
    <tr><th>DMARC</th><td><${Verdict} label="dmarc" result=${auth.dmarc.result} /> ${auth.dmarc.domain || ''} ${auth.dmarc.policy ? `p=${auth.dmarc.policy}` : ''}</td></tr>
    <tr><th>ARC</th><td><${Verdict} label="arc" result=${auth.arc.result} /></td></tr>
  </tbody></table>`;
}

function Message() {
  const id = idFromPath();
  const [m, setM] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => { api('/api/v1/messages/' + encodeURIComponent(id) + '/parsed').then(setM).catch(setError); }, [id]);
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!m) return html`<p class="muted">Loading…</p>`;
  const s = m.summary;
  const base = '/api/v1/messages/' + encodeURIComponent(id);
  return html`<h1>${m.subject || '(no subject)'}</h1>
    <p class="links"><a href=${base + '/raw'} class="raw">Raw message</a> · <a href="/messages">All messages</a></p>
    <div class="two">
      <section><h3>Envelope and TLS</h3><table class="kv"><tbody>
        <tr><th>received</th><td>${fmtDate(s.receivedAt)}</td></tr>
        <tr><th>MAIL FROM</th><td>${s.mailFrom || '<>'}</td></tr>
        <tr><th>RCPT TO</th><td>${s.recipients.join(', ')}</td></tr>
        <tr><th>from client</th><td>${s.heloName} [${s.clientAddress}] via ${s.listener}${s.authUser ? ', auth ' + s.authUser : ''}</td></tr>
        <tr><th>TLS</th><td class="tls-facts"><${TlsBadge} tls=${s.tls} /> ${s.tls ? `${s.tls.cipher}${s.tls.group ? ' · ' + s.tls.group : ''}${s.tls.sni ? ' · SNI ' + s.tls.sni : ''}` : 'received without TLS'}</td></tr>
        <tr><th>size</th><td>${fmtBytes(s.size)}${s.requireTls ? ' · REQUIRETLS' : ''}${s.quarantine ? ' · quarantined (DMARC)' : ''}</td></tr>
      </tbody></table></section>
      <section><h3>Authentication</h3><${Auth} auth=${s.authResults} /></section>
    </div>
    <h3>Header fields</h3>
    <table class="kv headers"><tbody>${m.headers.map((hd) => html`<tr><th>${hd.name}</th><td>${hd.value}</td></tr>`)}</tbody></table>
    ${m.hasHtml ? html`<h3>HTML body <span class="muted">(sandboxed: no scripts, no remote content)</span></h3>
      <iframe class="mailhtml" sandbox="" referrerpolicy="no-referrer" src=${base + '/html'} title="message HTML body"></iframe>` : null}
    <h3>Text body</h3>
    ${m.text ? html`<pre class="body">${m.text}</pre>` : html`<p class="muted">No text part.</p>`}
    ${m.attachments.length ? html`<h3>Attachments</h3><ul>${m.attachments.map((a) => html`<li>${a.filename || '(unnamed)'} <span class="muted">${a.mimeType} · ${fmtBytes(a.size)}</span></li>`)}</ul>` : null}`;
}

mount('/messages', Message);
