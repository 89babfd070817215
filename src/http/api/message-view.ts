/**
 * A stored message parsed for people (issue 14 item 2), under /api/v1:
 * - `GET /messages/ID/parsed`: header fields, subject/from/to/date, the text body, whether an HTML
 *   body exists, attachment names and sizes (not their content).
 * - `GET /messages/ID/html`: the HTML body alone, for the console's `<iframe sandbox="">`.
 *
 * Invariants: message HTML is never rendered in the console's origin. The html response carries
 * `Content-Security-Policy: sandbox; default-src 'none'; img-src data:` — the CSP sandbox
 * directive (CSP3 §6.3.2.1, HTML "sandboxing flags") gives the document an opaque origin and no
 * scripts even when opened directly (not through the sandboxed iframe), `default-src 'none'`
 * blocks every fetch it could make (no remote images: no read receipts, no tracking), `data:`
 * images only. MIME parsing is postal-mime's (a maintained parser); the message size is already
 * bounded by the SMTP listener's SIZE limit, so the parse is bounded too.
 */
import { Hono } from 'hono';
import PostalMime from 'postal-mime';
import type { HttpContext, HttpEnv } from '../context.js';
import { apiError } from './errors.js';
import { ID_RE } from './messages.js';

/** The header set on the message HTML response; tests and the page rely on it verbatim. */
export const MESSAGE_HTML_CSP = "sandbox; default-src 'none'; img-src data:";

/** Text bodies are cut here in the JSON view (the raw message stays available in full). */
const MAX_TEXT = 1024 * 1024;

export function messageViewApi(ctx: HttpContext): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();

  const load = async (id: string) => {
    const stored = ID_RE.test(id) ? await ctx.store.getMessage(id) : null;
    if (!stored) return null;
    const email = await PostalMime.parse(stored.data);
    return { stored, email };
  };
  const notFound = apiError('HTTP_NOT_FOUND', 'no such message');

  app.get('/messages/:id/parsed', async (c) => {
    const m = await load(c.req.param('id'));
    if (!m) return c.json(notFound, 404);
    const { stored, email } = m;
    const text = email.text ?? '';
    return c.json({
      summary: stored.summary,
      subject: email.subject ?? null,
      from: email.from ?? null,
      to: email.to ?? [],
      date: email.date ?? null,
      headers: email.headers.map((h) => ({ name: h.originalKey ?? h.key, value: h.value })),
      text: text.length > MAX_TEXT ? text.slice(0, MAX_TEXT) : text,
      textTruncated: text.length > MAX_TEXT,
      hasHtml: typeof email.html === 'string' && email.html.length > 0,
      attachments: email.attachments.map((a) => ({
        filename: a.filename ?? null,
        mimeType: a.mimeType,
        size: typeof a.content === 'string' ? a.content.length : a.content.byteLength,
      })),
    });
  });

  app.get('/messages/:id/html', async (c) => {
    const m = await load(c.req.param('id'));
    if (!m) return c.json(notFound, 404);
    const body = m.email.html ?? '';
    return c.body(body, 200, {
      'Content-Type': 'text/html; charset=utf-8',
      'Content-Security-Policy': MESSAGE_HTML_CSP,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'Cache-Control': 'no-store',
      // Framed only by the console's own pages (the sandboxed iframe of /messages/ID).
      'X-Frame-Options': 'SAMEORIGIN',
    });
  });

  return app;
}
