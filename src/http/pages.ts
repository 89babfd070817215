/**
 * The console pages (issue 14 items 1–2): one HTML shell per page and the static files they load.
 *
 * - Pages (`/`, `/check`, `/check/ID`, `/messages`, `/messages/ID`, `/queue`) sit behind the
 *   console guard app.ts passes in (a redirect to /login without a session). The shell carries
 *   the session's CSRF token in `<meta name="csrf-token">`; the page's module sends it back as
 *   `X-CSRF-Token` on state changes (auth.ts checks it).
 * - `/assets/ui/NAME`: our own ES modules and CSS (src/http/ui, copied to dist/http/ui by the
 *   build); `/assets/vendor/NAME`: Preact, its hooks, htm and uPlot from node_modules. Both are
 *   served from FIXED allow-lists: a name not in the table is a 404, so no request path ever
 *   reaches the file system (no directory traversal, encoded or not). They need no login: they
 *   are public code, not data (the login page uses the stylesheet).
 *
 * Invariants: no inline script or style anywhere in the HTML (the CSP is `script-src 'self';
 * style-src 'self'`, app.ts); every interpolated value is HTML-escaped; no external origin.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import type { HttpContext, HttpEnv } from './context.js';

const UI_DIR = fileURLToPath(new URL('./ui/', import.meta.url));

const JS = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';

/** Our modules: URL name → content type (the file has the same name in UI_DIR). */
export const UI_FILES: Readonly<Record<string, string>> = {
  'app.css': CSS,
  'common.js': JS,
  'diagram.js': JS,
  'fixes.js': JS,
  'check.js': JS,
  'dashboard.js': JS,
  'messages.js': JS,
  'message.js': JS,
  'queue.js': JS,
};

interface VendorFile {
  pkg: string;
  file: string;
  type: string;
  /** Bare import specifiers rewritten to our URLs (a browser without an import map cannot resolve `preact`). */
  rewrite?: Array<[string, string]>;
}

/** Third-party files: URL name → package file. */
export const VENDOR_FILES: Readonly<Record<string, VendorFile>> = {
  'preact.js': { pkg: 'preact', file: 'dist/preact.module.js', type: JS },
  'preact-hooks.js': { pkg: 'preact', file: 'hooks/dist/hooks.module.js', type: JS, rewrite: [['from"preact"', 'from"/assets/vendor/preact.js"']] },
  'htm.js': { pkg: 'htm', file: 'dist/htm.module.js', type: JS },
  'uplot.js': { pkg: 'uplot', file: 'dist/uPlot.esm.js', type: JS },
  'uplot.css': { pkg: 'uplot', file: 'dist/uPlot.min.css', type: CSS },
};

const require = createRequire(import.meta.url);

/** The directory of an installed package (walks up from its resolved entry point to its package.json). */
function packageDir(pkg: string): string {
  let dir = dirname(require.resolve(pkg));
  for (;;) {
    try {
      const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown };
      if (meta.name === pkg) return dir;
    } catch {
      // no package.json here: keep walking up
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`package ${pkg} not found`);
    dir = up;
  }
}

interface Asset {
  body: string;
  type: string;
}

/** Loads the allow-listed files once (they do not change while serve runs). */
function loadAssets(): { ui: Map<string, Asset>; vendor: Map<string, Asset> } {
  const ui = new Map<string, Asset>();
  for (const [name, type] of Object.entries(UI_FILES)) ui.set(name, { body: readFileSync(join(UI_DIR, name), 'utf8'), type });
  const vendor = new Map<string, Asset>();
  for (const [name, v] of Object.entries(VENDOR_FILES)) {
    let body = readFileSync(join(packageDir(v.pkg), v.file), 'utf8');
    for (const [from, to] of v.rewrite ?? []) {
      if (!body.includes(from)) throw new Error(`${v.pkg}/${v.file}: expected import ${from} not found (package layout changed?)`);
      body = body.split(from).join(to);
    }
    // Drop the source map reference: the .map files are not served.
    body = body.replace(/\n?\/[/*]# sourceMappingURL=\S+(\s*\*\/)?\s*$/, '\n');
    vendor.set(name, { body, type: v.type });
  }
  return { ui, vendor };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

interface PageDef {
  title: string;
  module: string;
  css?: string[];
}

const PAGES: Readonly<Record<string, PageDef>> = {
  dashboard: { title: 'Dashboard', module: 'dashboard.js', css: ['/assets/vendor/uplot.css'] },
  check: { title: 'Checker', module: 'check.js' },
  messages: { title: 'Messages', module: 'messages.js' },
  message: { title: 'Message', module: 'message.js' },
  queue: { title: 'Queue', module: 'queue.js' },
};

/** The HTML shell of a page: no inline script or style, the CSRF token in a meta element. */
export function pageShell(page: PageDef, csrf: string): string {
  const css = ['/assets/ui/app.css', ...(page.css ?? [])].map((href) => `<link rel="stylesheet" href="${escapeHtml(href)}">`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="${escapeHtml(csrf)}">
<title>postseal — ${escapeHtml(page.title)}</title>
${css}
<script type="module" src="/assets/ui/${escapeHtml(page.module)}"></script>
</head><body><div id="app"><noscript>The postseal console needs JavaScript; the same data is in the JSON API under /api/v1.</noscript></div></body></html>
`;
}

/**
 * The pages and assets. `guard` is the console guard of app.ts (consoleAuth): it sets the
 * principal or redirects to /login.
 */
export function pagesApp(_ctx: HttpContext, guard: MiddlewareHandler<HttpEnv>): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();
  const assets = loadAssets();

  const serveAsset = (table: Map<string, Asset>) => (c: Context<HttpEnv>): Response => {
    const a = table.get(c.req.param('name') ?? '');
    if (!a) return c.text('not found', 404);
    return c.body(a.body, 200, { 'Content-Type': a.type, 'Cache-Control': 'no-cache' });
  };
  app.get('/assets/ui/:name', serveAsset(assets.ui));
  app.get('/assets/vendor/:name', serveAsset(assets.vendor));

  const page = (def: PageDef) => (c: Context<HttpEnv>): Response | Promise<Response> => {
    const p = c.get('principal');
    c.header('Cache-Control', 'no-store'); // the shell carries the session's CSRF token
    return c.html(pageShell(def, p.kind === 'session' ? p.csrf : ''));
  };
  const pages: Array<[string, PageDef]> = [
    ['/', PAGES.dashboard!],
    ['/check', PAGES.check!],
    ['/check/:id', PAGES.check!],
    ['/messages', PAGES.messages!],
    ['/messages/:id', PAGES.message!],
    ['/queue', PAGES.queue!],
  ];
  for (const [path, def] of pages) app.get(path, guard, page(def));
  return app;
}
