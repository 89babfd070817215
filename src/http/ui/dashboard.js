// The dashboard (/): sessions now, a uPlot chart of inbound messages and outbound delivery
// sessions per hour by TLS version (GET /api/v1/stats/tls), and "who still sends me plaintext?".
import { useState, useEffect, useRef } from '/assets/vendor/preact-hooks.js';
import uPlot from '/assets/vendor/uplot.js';
import { html, api, mount, ErrorBox, fmtDate } from './common.js';

// Fixed colours per version so the two charts read the same way (CSS cannot reach canvas strokes).
const COLOURS = { 'TLSv1.3': '#1b7f3b', 'TLSv1.2': '#4f9fd8', 'TLSv1.1': '#e0a030', TLSv1: '#d96b1f', plaintext: '#c62828' };
const ORDER = ['TLSv1.3', 'TLSv1.2', 'TLSv1.1', 'TLSv1', 'plaintext'];

function keysOf(series) {
  const keys = Object.keys(series);
  return keys.sort((a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99));
}

function TlsChart({ title, buckets, series }) {
  const ref = useRef(null);
  const keys = keysOf(series);
  const total = keys.reduce((n, k) => n + series[k].reduce((a, b) => a + b, 0), 0);
  useEffect(() => {
    if (!ref.current || !keys.length) return undefined;
    const opts = {
      width: Math.min(900, ref.current.clientWidth || 900),
      height: 240,
      scales: { x: { time: true } },
      series: [{}, ...keys.map((k) => ({ label: k, stroke: COLOURS[k] || '#777', width: 2, points: { show: false } }))],
      axes: [{}, { label: 'per hour' }],
    };
    const plot = new uPlot(opts, [buckets, ...keys.map((k) => series[k])], ref.current);
    return () => plot.destroy();
  }, [buckets, series]);
  return html`<section class="chart" data-chart=${title}>
    <h3>${title} <span class="muted">(${total} in the window)</span></h3>
    ${keys.length ? html`<div class="plot" ref=${ref}></div>` : html`<p class="muted">Nothing in this window yet.</p>`}
  </section>`;
}

function Dashboard() {
  const [now, setNow] = useState(null);
  const [stats, setStats] = useState(null);
  const [hours, setHours] = useState(24);
  const [error, setError] = useState(null);

  useEffect(() => {
    let stop = false;
    const load = () => api('/api/v1/stats/now').then((d) => { if (!stop) setNow(d); }).catch(setError);
    load();
    const t = setInterval(load, 5000);
    return () => { stop = true; clearInterval(t); };
  }, []);
  useEffect(() => {
    api('/api/v1/stats/tls?hours=' + hours).then(setStats).catch(setError);
  }, [hours]);

  return html`<h1>Server</h1>
    <${ErrorBox} error=${error} />
    ${now ? html`<div class="tiles">
      <div class="tile"><div class="num" data-stat="sessions">${now.sessions}</div><div>SMTP sessions now</div></div>
      <div class="tile"><div class="num">${now.queue.queued ?? 0} / ${now.queue.deferred ?? 0}</div><div>queued / deferred</div></div>
      <div class="tile"><div class="num">${now.messages}</div><div>messages stored</div></div>
      <div class="tile"><div class="listeners">${now.listeners.map((l) => html`<div>${l.name} ${l.host}:${l.port} <span class="muted">${l.tls}</span></div>`)}</div><div>listeners</div></div>
    </div>` : null}
    <div class="toolbar">TLS by version over the last
      <select value=${hours} onChange=${(e) => setHours(Number(e.currentTarget.value))}>
        <option value="6">6 hours</option><option value="24">24 hours</option><option value="72">3 days</option><option value="168">7 days</option>
      </select></div>
    ${stats ? html`
      <${TlsChart} title="Inbound (messages received)" buckets=${stats.buckets} series=${stats.inbound} />
      <${TlsChart} title="Outbound (delivery sessions)" buckets=${stats.buckets} series=${stats.outbound} />
      ${stats.truncated ? html`<p class="muted">Only the newest rows were counted.</p>` : null}
      <h2>Who still sends me plaintext? <span class="muted">(last ${stats.plaintext.days} days)</span></h2>
      <div class="two">
        <section><h3>Received without TLS</h3>
          ${stats.plaintext.inbound.length ? html`<table class="list plain-in"><thead><tr><th>HELO</th><th>IP</th><th>messages</th><th>last</th></tr></thead>
            <tbody>${stats.plaintext.inbound.map((p) => html`<tr><td>${p.heloName}</td><td>${p.clientAddress}</td><td>${p.count}</td><td>${fmtDate(p.last)}</td></tr>`)}</tbody></table>`
            : html`<p class="good-text">Nobody: every message arrived over TLS.</p>`}</section>
        <section><h3>Delivered without TLS</h3>
          ${stats.plaintext.outbound.length ? html`<table class="list plain-out"><thead><tr><th>domain</th><th>sessions</th><th>why</th><th>last</th></tr></thead>
            <tbody>${stats.plaintext.outbound.map((d) => html`<tr><td>${d.domain}</td><td>${d.count}</td><td>${d.whyNot || ''}</td><td>${fmtDate(d.last)}</td></tr>`)}</tbody></table>`
            : html`<p class="good-text">None: every delivery session used TLS.</p>`}</section>
      </div>` : null}`;
}

mount('/', Dashboard);
