// The SMTP conversation of a check report drawn as a sequence diagram (SVG built by Preact):
// client and server lifelines, one arrow per transcript line, plaintext lines in the "plain"
// colour and lines inside TLS in the "tls" colour, the STARTTLS upgrade as a band across both
// lifelines. Text is set as SVG text nodes (escaped by Preact), never as markup.
import { html } from './common.js';

const ROW = 22;
const TOP = 40;
const WIDTH = 760;
const LEFT = 120;
const RIGHT = WIDTH - 120;
const MAX_TEXT = 70;

function clip(text) {
  const t = String(text).replace(/\r?\n$/, '');
  return t.length > MAX_TEXT ? t.slice(0, MAX_TEXT - 1) + '…' : t;
}

/** Turns a transcript into diagram rows: arrows, notes and the TLS band. */
export function diagramRows(transcript) {
  const rows = [];
  for (const e of transcript || []) {
    if (e.dir === 'event') {
      if (/TLS upgrade/i.test(e.text)) rows.push({ kind: 'band', text: 'STARTTLS: TLS handshake — everything below is encrypted' });
      else rows.push({ kind: 'note', text: e.text, tls: e.tls });
      continue;
    }
    // A multi-line server reply is one arrow per line, as it was on the wire.
    const lines = String(e.text).split(/\r?\n/).filter((l) => l.length > 0);
    for (const line of lines.length ? lines : ['']) rows.push({ kind: e.dir, text: line, tls: e.tls });
  }
  // No explicit upgrade event: put the band where the first encrypted line follows a plaintext one.
  if (!rows.some((r) => r.kind === 'band')) {
    const i = rows.findIndex((r, idx) => r.tls && idx > 0 && rows[idx - 1] && !rows[idx - 1].tls);
    if (i > 0) rows.splice(i, 0, { kind: 'band', text: 'TLS handshake — everything below is encrypted' });
  }
  return rows;
}

export function SequenceDiagram({ transcript, client = 'postseal check', server = 'server' }) {
  const rows = diagramRows(transcript);
  if (!rows.length) return html`<p class="muted">No conversation recorded.</p>`;
  const height = TOP + rows.length * ROW + 20;
  return html`<div class="diagram-wrap">
    <p class="legend"><span class="swatch plain"></span> plaintext (readable and changeable on the path)
      <span class="swatch tls"></span> inside TLS</p>
    <svg class="seq" viewBox=${`0 0 ${WIDTH} ${height}`} width=${WIDTH} height=${height} role="img"
      aria-label="SMTP conversation sequence diagram">
      <text class="actor" x=${LEFT} y="16" text-anchor="middle">${client}</text>
      <text class="actor" x=${RIGHT} y="16" text-anchor="middle">${server}</text>
      <line class="lifeline" x1=${LEFT} y1="24" x2=${LEFT} y2=${height - 4} />
      <line class="lifeline" x1=${RIGHT} y1="24" x2=${RIGHT} y2=${height - 4} />
      ${rows.map((r, i) => {
        const y = TOP + i * ROW;
        if (r.kind === 'band') {
          return html`<g class="band" data-kind="starttls-band">
            <rect x="10" y=${y - 14} width=${WIDTH - 20} height=${ROW - 2} />
            <text x=${WIDTH / 2} y=${y + 1} text-anchor="middle">${r.text}</text></g>`;
        }
        if (r.kind === 'note') {
          return html`<text class="note" x=${WIDTH / 2} y=${y} text-anchor="middle">${clip(r.text)}</text>`;
        }
        const fromClient = r.kind === 'client';
        const x1 = fromClient ? LEFT : RIGHT;
        const x2 = fromClient ? RIGHT : LEFT;
        const cls = `msg ${r.tls ? 'tls' : 'plain'} ${r.kind}`;
        return html`<g class=${cls} data-tls=${r.tls ? 'yes' : 'no'}>
          <line x1=${x1} y1=${y + 4} x2=${x2} y2=${y + 4} marker-end="url(#arrow)" />
          <text x=${(LEFT + RIGHT) / 2} y=${y} text-anchor="middle">${clip(r.text)}</text></g>`;
      })}
      <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
        <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" /></marker></defs>
    </svg></div>`;
}
