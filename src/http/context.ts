/**
 * What every part of the HTTP face (issue 14) is given: the configuration, the store, the logger,
 * the metrics registry, the checker functions and the facts of the running server. Built once by
 * `postseal serve` (cli/serve.ts) after startServe; route modules read it and never open their own
 * store or sockets.
 *
 * Invariants: one context per running serve; `http` is filled by startHttp once bound.
 */
import { Registry } from 'prom-client';
import type { Hono } from 'hono';
import { checkDomain, checkHost } from '../check/index.js';
import type { ServeConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { RunningServer } from '../serve.js';
import type { Store } from '../store/index.js';

/** Who made a request under /api/v1 (set by the auth middleware, auth.ts). */
export type Principal =
  | { kind: 'token'; tokenId: string; name: string }
  | { kind: 'session'; address: string; sessionId: string; csrf: string };

/** Hono's environment for postseal's apps: `c.get('principal')` is set on authenticated routes. */
export interface HttpEnv {
  Variables: { principal: Principal };
}

/** A route module (J2's api/*.ts, pages.ts, metrics.ts): a sub-app for a context. */
export type RouteModule = (ctx: HttpContext) => Hono<HttpEnv>;

export interface HttpContext {
  cfg: ServeConfig;
  store: Store;
  logger: Logger;
  /** The running SMTP side: bound listeners, certificates, the queue runner (or null). */
  running: RunningServer;
  /** One prom-client registry for /metrics (metrics.ts registers its collectors here). */
  metrics: Registry;
  /** The checker (the same functions `postseal check` calls). */
  checker: { checkHost: typeof checkHost; checkDomain: typeof checkDomain };
  startedAt: Date;
  /** Filled by startHttp once the HTTP listener is bound. */
  http: { host: string; port: number; secure: boolean } | null;
  /** Set when serve starts its graceful stop (/readyz answers 503 from then on). */
  stopping: boolean;
}

export function createHttpContext(cfg: ServeConfig, running: RunningServer, more: Partial<Pick<HttpContext, 'metrics' | 'checker' | 'logger'>> = {}): HttpContext {
  return {
    cfg,
    store: running.store,
    logger: more.logger ?? running.logger,
    running,
    metrics: more.metrics ?? new Registry(),
    checker: more.checker ?? { checkHost, checkDomain },
    startedAt: new Date(),
    http: null,
    stopping: false,
  };
}
