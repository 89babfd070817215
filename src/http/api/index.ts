/**
 * The JSON API: every /api/v1 route module in one sub-app, mounted at `/api/v1` by app.ts behind
 * the auth middleware (a token or a console session; 401 otherwise). Routes only format what the
 * store, the checker and the policy layer return.
 */
import { Hono } from 'hono';
import type { HttpContext, HttpEnv } from '../context.js';
import { OPENAPI } from '../openapi.js';
import { checksApi } from './checks.js';
import { messagesApi } from './messages.js';
import { queueApi } from './queue.js';
import { usersApi } from './users.js';

export function apiRoutes(ctx: HttpContext): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();
  app.route('/', checksApi(ctx));
  app.route('/', messagesApi(ctx));
  app.route('/', queueApi(ctx));
  app.route('/', usersApi(ctx));
  app.get('/openapi.json', (c) => c.json(OPENAPI));
  return app;
}
