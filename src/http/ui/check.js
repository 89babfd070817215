// The checker page (/check and /check/ID): a form that starts a check through POST /api/v1/checks,
// progress streamed from /api/v1/checks/ID/events (EventSource), then the report drawn: grade,
// findings by severity with their fix, the SMTP conversation as a sequence diagram, certificate
// chain, TLS versions and suites, and the domain policies (MTA-STS, DANE, TLS-RPT, SPF, DMARC, DKIM).
// The report is the same JSON as `postseal check --json` (src/check/SCHEMA.md).
import { useState, useEffect } from '/assets/vendor/preact-hooks.js';
import { html, api, mount, ErrorBox, fmtDate } from './common.js';
import { SequenceDiagram } from './diagram.js';
import { fixFor } from './fixes.js';

const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'];

function idFromPath() {
  const m = /^\/check\/([^/]+)$/.exec(location.pathname);
  return m ? decodeURIComponent(m[1]) : null;
}

/**
 * The POST body for the field: HOST:PORT or an IP address is a host check; a bare name is
 * checked as `mode` says (a domain: its MX hosts and policies; or that host on port 25).
 */
export function checkRequest(input, mode) {
  const v = input.trim();
  const hostLike = /:\d+$/.test(v) || /^\[/.test(v) || /^\d+\.\d+\.\d+\.\d+$/.test(v) || v.includes('::');
  return hostLike || mode === 'host' ? { target: v } : { domain: v };
}

function progressText(data) {
  try {
    const d = JSON.parse(data);
    if (d && typeof d === 'object') return `${d.address ? d.address + ' ' : ''}${d.step || ''}${d.detail ? ': ' + d.detail : ''}`;
  } catch { /* plain text */ }
  return String(data);
}

function isReport(d) {
  return d && typeof d === 'object' && (d.kind === 'host' || d.kind === 'domain') && d.schemaVersion;
}

function Grade({ grade }) {
  const g = grade || '–';
  const cls = /^A/.test(g) ? 'good' : g === 'B' ? 'ok' : g === '–' ? 'muted' : 'bad';
  return html`<div class=${'grade ' + cls} data-grade=${g}>${g}</div>`;
}

function Findings({ findings }) {
  if (!findings || !findings.length) return html`<p class="good-text">No findings.</p>`;
  return html`<div class="findings">${SEVERITIES.map((sev) => {
    const list = findings.filter((f) => f.severity === sev);
    if (!list.length) return null;
    return html`<section class=${'sev sev-' + sev}>
      <h3>${sev} <span class="count">${list.length}</span></h3>
      <ul>${list.map((f) => html`<li class="finding" data-id=${f.id}>
        <div class="ftitle"><code>${f.id}</code> ${f.title}</div>
        <div class="fdetail">${f.detail}</div>
        <div class="fwhere muted">${f.where}</div>
        ${fixFor(f.id) ? html`<div class="ffix"><strong>Fix:</strong> ${fixFor(f.id)}</div>` : null}
      </li>`)}</ul></section>`;
  })}</div>`;
}

function CertChain({ cert }) {
  if (!cert) return html`<p class="muted">No certificate (no TLS session).</p>`;
  return html`<div>
    <p>${cert.trusted ? html`<span class="badge good">trusted</span>` : html`<span class="badge bad">untrusted${cert.verifyError ? ': ' + cert.verifyError : ''}</span>`}
      ${' '}${cert.nameMatches ? html`<span class="badge good">name matches</span>` : html`<span class="badge bad">name mismatch</span>`}
      ${' '}${cert.daysLeft !== null && cert.daysLeft !== undefined ? html`<span class=${'badge ' + (cert.daysLeft < 14 ? 'bad' : 'muted')}>${cert.daysLeft} days left</span>` : null}</p>
    <table class="chain"><thead><tr><th>#</th><th>subject</th><th>issuer</th><th>names</th><th>valid</th><th>key</th><th>signature</th></tr></thead>
    <tbody>${(cert.chain || []).map((c, i) => html`<tr>
      <td>${i}</td><td>${c.subject}</td><td>${c.issuer}</td>
      <td>${(c.subjectAltNames || []).map((n) => (typeof n === 'string' ? n : `${n.type}:${n.value}`)).join(', ')}</td>
      <td>${fmtDate(c.notBefore)} – ${fmtDate(c.notAfter)}</td>
      <td>${c.key ? `${c.key.type || ''} ${c.key.bits || ''} ${c.key.curve || ''}` : ''}</td>
      <td>${c.signatureAlgorithm ? c.signatureAlgorithm.name || c.signatureAlgorithm.oid : ''}</td></tr>`)}</tbody></table></div>`;
}

function outcomeCell(o) {
  const cls = o === 'accepted' ? 'acc' : o === 'refused' ? 'ref' : 'nt';
  return html`<td class=${'outcome ' + cls}>${o}</td>`;
}

function TlsMatrix({ tls }) {
  if (!tls) return html`<p class="muted">No TLS session was established.</p>`;
  const versions = Object.entries(tls.versions || {});
  const classes = Object.entries(tls.cipherClasses || {});
  return html`<div class="tlsgrid">
    <p>Negotiated: <strong>${tls.protocol}</strong> · ${tls.cipher}${tls.group ? ' · ' + tls.group : ''}</p>
    <table class="matrix"><thead><tr><th>protocol version</th><th>outcome</th></tr></thead>
      <tbody>${versions.map(([v, o]) => html`<tr><th>${v}</th>${outcomeCell(o)}</tr>`)}</tbody></table>
    <table class="matrix"><thead><tr><th>cipher class (TLS ≤ 1.2)</th><th>outcome</th><th>suite</th></tr></thead>
      <tbody>${classes.map(([k, v]) => html`<tr><th>${k}</th>${outcomeCell(v && v.outcome)}<td>${(v && v.cipher) || ''}</td></tr>`)}</tbody></table>
    ${tls.dhe ? html`<p>DHE: ${tls.dhe.outcome}${tls.dhe.bits ? ` (${tls.dhe.bits} bits)` : ''} · cipher order: ${tls.cipherOrder ? tls.cipherOrder.outcome : 'not-tested'}</p>` : null}
  </div>`;
}

function HostDetails({ r }) {
  const t = r.target || {};
  return html`<div class="host" data-host=${t.host}>
    <h3>${t.host} <span class="muted">${t.address}:${t.port} · ${t.mode}</span> <${Grade} grade=${r.grade} /></h3>
    ${r.error ? html`<p class="error">${r.error.code}: ${r.error.message}</p>` : null}
    <h4>SMTP conversation</h4>
    <${SequenceDiagram} transcript=${r.transcript} server=${t.host || 'server'} />
    <h4>Certificate chain</h4>
    <${CertChain} cert=${r.certificate} />
    <h4>TLS versions and suites</h4>
    <${TlsMatrix} tls=${r.tls} />
  </div>`;
}

function Kv({ rows }) {
  return html`<table class="kv"><tbody>${rows.map(([k, v]) => html`<tr><th>${k}</th><td>${v === null || v === undefined || v === '' ? html`<span class="muted">none</span>` : String(v)}</td></tr>`)}</tbody></table>`;
}

function DomainPolicies({ r }) {
  const sts = r.mtaSts || {};
  const dmarc = r.dmarc || {};
  const spf = r.spf || {};
  const rpt = r.tlsRpt || {};
  return html`<div class="policies">
    <section><h4>MTA-STS</h4><${Kv} rows=${[
      ['TXT', sts.txt], ['mode', sts.policy && sts.policy.mode], ['mx', sts.policy && (sts.policy.mx || []).join(', ')],
      ['max_age', sts.policy && sts.policy.maxAge], ['error', sts.error]]} /></section>
    <section><h4>DANE</h4>${(r.dane || []).length ? html`<table class="kv"><tbody>${r.dane.map((d) => html`<tr><th>${d.name}</th>
      <td>${d.validated ? 'DNSSEC validated' : 'not validated'} · ${(d.records || []).map((x) => `${x.usage} ${x.selector} ${x.matchingType}: ${x.result}`).join('; ') || 'no TLSA'}</td></tr>`)}</tbody></table>` : html`<p class="muted">No TLSA records.</p>`}</section>
    <section><h4>TLS-RPT</h4><${Kv} rows=${[['record', rpt.record], ['rua', (rpt.rua || []).join(', ')], ['error', rpt.error]]} /></section>
    <section><h4>SPF</h4><${Kv} rows=${[['record', spf.record], ['all', spf.all], ['error', spf.error]]} /></section>
    <section><h4>DMARC</h4><${Kv} rows=${[['record', dmarc.record], ['policy', dmarc.policy], ['rua', Array.isArray(dmarc.rua) ? dmarc.rua.join(', ') : dmarc.rua], ['error', dmarc.error]]} /></section>
    <section><h4>DKIM</h4>${r.dkim && (r.dkim.selectors || []).length ? html`<table class="kv"><tbody>${r.dkim.selectors.map((s) => html`<tr><th>${s.name}</th><td>${s.algorithm} · ${s.status}${s.fix ? ' · publish: ' + s.fix : ''}</td></tr>`)}</tbody></table>` : html`<p class="muted">Not checked (no keys of ours for this domain).</p>`}</section>
  </div>`;
}

export function Report({ id, report }) {
  const r = report;
  const title = r.kind === 'domain' ? r.domain || 'domain check' : r.target ? `${r.target.host}:${r.target.port}` : 'host check';
  return html`<article class="report" data-kind=${r.kind} data-status=${r.status}>
    <div class="report-head"><${Grade} grade=${r.grade} />
      <div><h2>${title}</h2>
        <p class="muted">${r.kind} check · ${fmtDate(r.startedAt)}${r.durationMs !== undefined ? ` · ${r.durationMs} ms` : ""}${r.kind === 'domain' ? ' · downgrade protection: ' + r.downgrade : ''}</p>
        <p class="links">${id ? html`<a href=${'/check/' + encodeURIComponent(id)} class="share">Shareable link</a> · <a href=${'/api/v1/checks/' + encodeURIComponent(id)} download=${'check-' + id + '.json'} class="download">Download JSON</a>` : null}</p></div></div>
    ${r.error ? html`<p class="error">${r.error.code}: ${r.error.message}</p>` : null}
    ${r.status === 'error' && !r.findings ? null : html`<h3>Findings</h3>
    <${Findings} findings=${r.findings} />
    ${r.kind === 'domain' ? html`<h3>Policies</h3><${DomainPolicies} r=${r} />
      <h3>MX hosts</h3>${(r.hosts || []).map((h) => html`<${HostDetails} r=${h} />`)}` : html`<${HostDetails} r=${r} />`}`}
  </article>`;
}

function CheckPage() {
  const [id, setId] = useState(idFromPath());
  const [input, setInput] = useState('');
  const [mode, setMode] = useState('domain');
  const [progress, setProgress] = useState([]);
  const [report, setReport] = useState(null);
  const [error, setError] = useState(null);
  const [running, setRunning] = useState(false);

  useEffect(() => {
    if (!id) return undefined;
    let closed = false;
    let es = null;
    let timer = null;
    const finish = async () => {
      if (closed) return;
      try {
        const d = await api('/api/v1/checks/' + encodeURIComponent(id));
        if (isReport(d)) { setReport(d); setRunning(false); if (es) es.close(); return; }
        if (d && d.status === 'failed') { setError(new Error((d.error && d.error.message) || 'check failed')); setRunning(false); if (es) es.close(); return; }
      } catch (e) { setError(e); setRunning(false); if (es) es.close(); return; }
      timer = setTimeout(finish, 1000); // not done yet: look again (the stream may have been cut)
    };
    setRunning(true);
    es = new EventSource('/api/v1/checks/' + encodeURIComponent(id) + '/events');
    const onProgress = (ev) => setProgress((p) => p.concat(progressText(ev.data)).slice(-200));
    es.addEventListener('progress', onProgress);
    es.addEventListener('done', (ev) => {
      es.close();
      try {
        const d = JSON.parse(ev.data);
        if (isReport(d)) { setReport(d); setRunning(false); return; }
      } catch { /* fetch it instead */ }
      finish();
    });
    es.onerror = () => { es.close(); finish(); };
    return () => { closed = true; if (es) es.close(); if (timer) clearTimeout(timer); };
  }, [id]);

  const submit = async (ev) => {
    ev.preventDefault();
    setError(null); setReport(null); setProgress([]);
    try {
      const d = await api('/api/v1/checks', { method: 'POST', json: checkRequest(input, mode) });
      history.pushState(null, '', '/check/' + encodeURIComponent(d.id));
      setId(d.id);
    } catch (e) { setError(e); }
  };

  return html`<h1>Check a mail server</h1>
    <form class="checkform" onSubmit=${submit}>
      <input name="target" placeholder="mail.example.com:25 or example.com" value=${input}
        onInput=${(e) => setInput(e.currentTarget.value)} required autofocus />
      <label><input type="radio" name="mode" value="domain" checked=${mode === 'domain'} onChange=${() => setMode('domain')} /> domain (MX hosts + policies)</label>
      <label><input type="radio" name="mode" value="host" checked=${mode === 'host'} onChange=${() => setMode('host')} /> one host</label>
      <button type="submit" disabled=${running}>Run</button>
    </form>
    <p class="muted small-note">HOST:PORT or an IP address is always checked as one host (port 25 when none is given).</p>
    <${ErrorBox} error=${error} />
    ${running ? html`<div class="progress" aria-live="polite"><p>Checking${id ? ' (' + id + ')' : ''}…</p>
      <ol>${progress.map((p) => html`<li>${p}</li>`)}</ol></div>` : null}
    ${report ? html`<${Report} id=${id} report=${report} />` : null}`;
}

mount('/check', CheckPage);
