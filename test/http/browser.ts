/**
 * Real Chromium for the console's end-to-end tests: Debian's /usr/bin/chromium driven by
 * playwright-core (no bundled browser download). A missing chromium skips the test on a developer
 * machine and fails it on CI (CI=true: .ci/run installs it), like test/helpers/peers.ts does for
 * peers. Every browser gets a fresh temporary profile (user-data-dir) that is removed at close.
 *
 * The page guard collects what must never happen on our pages: a Content-Security-Policy
 * violation ("Refused to … Content Security Policy"), any console error, an uncaught page error.
 * Screenshots go to test-artifacts/ (gitignored).
 */
import assert from 'node:assert/strict';
import { constants } from 'node:fs';
import { access, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = process.env.POSTSEAL_CHROMIUM ?? '/usr/bin/chromium';
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const ARTIFACTS = join(ROOT, 'test-artifacts');

/** The flags of issue 14 (headless, no sandbox as root in CI, nothing phoning home). */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
] as const;

/** The chromium path, or null after marking the test skipped (a failure on CI=true). */
export async function findChromium(t: TestContext): Promise<string | null> {
  try {
    await access(CHROMIUM, constants.X_OK);
    return CHROMIUM;
  } catch {
    if (process.env.CI === 'true') assert.fail(`${CHROMIUM} not installed: .ci/run must install the Debian package chromium`);
    t.skip(`${CHROMIUM} not installed (apt-get install chromium)`);
    return null;
  }
}

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Chromium with a fresh profile directory; `close()` ends it and removes the profile. */
export async function launchBrowser(executablePath: string, opts: { baseURL?: string } = {}): Promise<Browser> {
  const profile = await mkdtemp(join(tmpdir(), 'postseal-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [...CHROMIUM_ARGS],
    baseURL: opts.baseURL,
    viewport: { width: 1280, height: 900 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(15_000);
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true });
    },
  };
}

export interface PageGuard {
  /** "Refused to … Content Security Policy" console messages seen so far. */
  cspViolations: string[];
  /** Console messages of type error (CSP violations included) and uncaught page errors. */
  errors: string[];
  /** Every console message, as `type: text (url)`, for failure output. */
  all: string[];
}

/** The DOM event every CSP violation fires (in every frame), reported to the test through a binding. */
const CSP_LISTENER = `addEventListener('securitypolicyviolation', (e) => {
  globalThis.__postsealCspViolation?.(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.documentURI + ':' + e.lineNumber);
}, true);`;

/**
 * Listens to the page's console, its page errors and its `securitypolicyviolation` events; assert on
 * the lists at the end of a step. A CSP violation is caught twice over: Chromium's console line
 * ("Refused to …" in older versions, "… violates the following Content Security Policy directive"
 * in Chromium 156) and the DOM event (an init script, which the page's CSP does not govern).
 * Call (and await) before the first navigation.
 */
export async function guardPage(page: Page): Promise<PageGuard> {
  const g: PageGuard = { cspViolations: [], errors: [], all: [] };
  page.on('console', (msg) => {
    const text = msg.text();
    const line = `${msg.type()}: ${text} (${msg.location().url})`;
    g.all.push(line);
    if (/Content Security Policy/i.test(text)) g.cspViolations.push(line);
    if (msg.type() === 'error') g.errors.push(line);
  });
  page.on('pageerror', (err) => g.errors.push(`pageerror: ${err.message}`));
  await page.exposeBinding('__postsealCspViolation', (_source, what: string) => {
    const line = `securitypolicyviolation: ${what}`;
    g.all.push(line);
    g.cspViolations.push(line);
  });
  await page.addInitScript(CSP_LISTENER);
  return g;
}

/** A full-page screenshot under test-artifacts/NAME.png; returns the path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
