/**
 * `/api/v1/queue`: the outbound queue, as `postseal queue list|show|retry|delete` see it.
 *
 * Invariants: list = `queue list --json` rows; show = `queue show --json` ({message, recipients,
 * attempts}, each attempt with its TLS outcome: level asked and reached, protocol, verification);
 * retry makes the message's deferred rows due now and wakes the running queue runner.
 */
import { Hono } from 'hono';
import { QUEUE_STATUSES, type QueueStatus } from '../../store/index.js';
import type { HttpContext, HttpEnv } from '../context.js';
import { apiError } from './errors.js';
import { ID_RE } from './messages.js';

export function queueApi(ctx: HttpContext): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();

  app.get('/queue', async (c) => {
    const status = c.req.query('status');
    if (status !== undefined && status !== '' && !(QUEUE_STATUSES as readonly string[]).includes(status)) {
      return c.json(apiError('HTTP_BAD_REQUEST', `status must be one of ${QUEUE_STATUSES.join(', ')}`), 400);
    }
    const rows = status ? (await ctx.store.listQueue({ status: status as QueueStatus })) : (await ctx.store.listQueue());
    return c.json(rows);
  });

  app.get('/queue/:id', async (c) => {
    const id = c.req.param('id');
    if (!ID_RE.test(id)) return c.json(apiError('HTTP_NOT_FOUND', `no queued message ${id}`), 404);
    const rows = await ctx.store.listQueue({ id });
    const msg = await ctx.store.getMessage(id);
    if (rows.length === 0 && msg === null) return c.json(apiError('HTTP_NOT_FOUND', `no queued message ${id}`), 404);
    return c.json({ message: msg?.summary ?? null, recipients: rows, attempts: (await ctx.store.listAttempts(id)) });
  });

  app.post('/queue/:id/retry', async (c) => {
    const id = c.req.param('id');
    if (!ID_RE.test(id) || (await ctx.store.listQueue({ id, limit: 1 })).length === 0) return c.json(apiError('HTTP_NOT_FOUND', `no queued message ${id}`), 404);
    const due = await ctx.store.retryQueued(id);
    ctx.running.relay?.kick();
    ctx.logger.info({ queueId: id, due }, 'queue retry over HTTP');
    return c.json({ id, due });
  });

  app.delete('/queue/:id', async (c) => {
    const id = c.req.param('id');
    const recipient = c.req.query('recipient');
    const n = ID_RE.test(id) ? await ctx.store.deleteQueued(id, recipient === '' ? undefined : recipient) : 0;
    if (n === 0) return c.json(apiError('HTTP_NOT_FOUND', `no queued message ${id}${recipient ? ` for ${recipient}` : ''}`), 404);
    ctx.logger.info({ queueId: id, deleted: n }, 'queue delete over HTTP');
    return c.json({ id, deleted: n });
  });

  return app;
}
