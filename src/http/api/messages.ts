/**
 * `/api/v1/messages`: received mail, read through the store as `postseal mailbox list|show` does.
 *
 * Invariants: the list has the fields of `mailbox list --json` (MessageSummary); the raw message is
 * only ever served as an attachment of type message/rfc822 with a sandboxing CSP and nosniff, so a
 * browser never renders mail content in the console's origin (issue 14 item 4).
 */
import { Hono } from 'hono';
import type { ListMessagesOptions } from '../../store/index.js';
import type { HttpContext, HttpEnv } from '../context.js';
import { apiError } from './errors.js';

/** Message ids are store ids: reject anything else before it reaches the store or a header (queue ids are message ids). */
export const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

export function messagesApi(ctx: HttpContext): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();

  app.get('/messages', async (c) => {
    const limitText = c.req.query('limit');
    const limit = limitText === undefined ? 100 : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) return c.json(apiError('HTTP_BAD_REQUEST', 'limit must be an integer 1-10000'), 400);
    const all = c.req.query('all');
    const opts: ListMessagesOptions = { limit, localOnly: all !== 'true' && all !== '1' };
    const mailbox = c.req.query('mailbox');
    if (mailbox !== undefined && mailbox !== '') {
      if (mailbox.length > 320) return c.json(apiError('HTTP_BAD_REQUEST', 'mailbox is not an address'), 400);
      opts.mailbox = mailbox;
    }
    return c.json((await ctx.store.listMessages(opts)));
  });

  app.get('/messages/:id', async (c) => {
    const id = c.req.param('id');
    const m = ID_RE.test(id) ? (await ctx.store.getMessage(id)) : null;
    if (m === null) return c.json(apiError('HTTP_NOT_FOUND', `no message ${id}`), 404);
    return c.json({ ...m.summary, rawUrl: `/api/v1/messages/${id}/raw` });
  });

  app.get('/messages/:id/raw', async (c) => {
    const id = c.req.param('id');
    const m = ID_RE.test(id) ? (await ctx.store.getMessage(id)) : null;
    if (m === null) return c.json(apiError('HTTP_NOT_FOUND', `no message ${id}`), 404);
    // Never rendered inline in our origin: a download, no sniffing, and sandboxed if opened anyway.
    c.header('Content-Type', 'message/rfc822');
    c.header('Content-Disposition', `attachment; filename="${id}.eml"`);
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Content-Security-Policy', "sandbox; default-src 'none'");
    const bytes = new Uint8Array(m.data.byteLength);
    bytes.set(m.data);
    return c.body(bytes.buffer);
  });

  return app;
}
