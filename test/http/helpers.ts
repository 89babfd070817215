/**
 * The console's test server: a real `postseal serve` child with `--http 127.0.0.1:0` (the bound
 * port read from its `listening http HOST:PORT tls=…` line), an admin user made with `user add
 * --admin` and an API token from `token create`, both through the real CLI before serve starts.
 * Plus small fetch helpers: a bearer client and a console login that returns the session cookie
 * and its CSRF token.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mxOnly, runCli, startServeChild, type ServeChild } from '../cli/child.js';

export const ADMIN = { address: 'admin@postseal.test', password: 'console-pass-1' } as const;

export interface ConsoleServer {
  serve: ServeChild;
  dataDir: string;
  /** http://127.0.0.1:PORT */
  base: string;
  /** A live API token (name `test`). */
  token: string;
  /** fetch with `Authorization: Bearer token` (path relative to base). */
  api(path: string, init?: RequestInit): Promise<Response>;
  /** Stops serve (SIGTERM, then waits) and removes the data directory. */
  close(): Promise<void>;
}

/** Runs one CLI command against a data dir; fails the test on a non-zero exit. */
export async function cli(args: string[], input?: string): Promise<string> {
  const r = await runCli(args, input === undefined ? {} : { input });
  assert.equal(r.code, 0, `postseal ${args.join(' ')}: exit ${r.code}; stderr: ${r.stderr}`);
  return r.stdout;
}

/** Adds a user (admin or not) with --password-stdin. */
export async function addUser(dataDir: string, address: string, password: string, admin: boolean): Promise<void> {
  await cli(['user', 'add', address, '--data', dataDir, '--password-stdin', ...(admin ? ['--admin'] : [])], password);
}

/** `token create --name NAME`: the printed token. */
export async function createToken(dataDir: string, name: string): Promise<string> {
  const out = (await cli(['token', 'create', '--name', name, '--data', dataDir])).trim();
  assert.match(out, /^ps_[A-Za-z0-9_-]{43}$/);
  return out;
}

/** The `listening http HOST:PORT` line of a serve child. */
export function httpPort(serve: ServeChild): number {
  return serve.port('http');
}

/**
 * A serve child with the console on 127.0.0.1:0, an admin and a token. `extra` flags go after
 * mxOnly's (e.g. `--http-check-private`, `--catch-all`, `--domain`).
 */
export async function startConsole(opts: { extra?: string[]; dataDir?: string } = {}): Promise<ConsoleServer> {
  const own = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'postseal-http-'));
  await addUser(dataDir, ADMIN.address, ADMIN.password, true);
  const token = await createToken(dataDir, 'test');
  const serve = await startServeChild(mxOnly(dataDir, ['--hostname', 'mail.postseal.test', '--domain', 'postseal.test', '--http', '127.0.0.1:0', ...(opts.extra ?? [])]), { listeners: 2 });
  const base = `http://127.0.0.1:${httpPort(serve)}`;
  return {
    serve,
    dataDir,
    base,
    token,
    api: (path, init = {}) => fetch(base + path, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${token}` } }),
    async close() {
      if (serve.child.exitCode === null && serve.child.signalCode === null) {
        serve.signal('SIGTERM');
        await serve.waitExit(30_000).catch(() => undefined);
      }
      if (own) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface Login {
  /** `postseal_session=…` for a Cookie header. */
  cookie: string;
  /** The whole Set-Cookie header of the login answer. */
  setCookie: string;
  csrf: string;
}

/** POST /login as a form; returns the session cookie and the CSRF token (GET /api/v1/session). */
export async function login(base: string, address: string = ADMIN.address, password: string = ADMIN.password): Promise<Login> {
  const res = await fetch(`${base}/login`, { method: 'POST', body: new URLSearchParams({ address, password }), redirect: 'manual' });
  assert.equal(res.status, 303, `login: ${res.status} ${await res.text()}`);
  const setCookie = res.headers.get('set-cookie') ?? '';
  const m = /^(postseal_session=[A-Za-z0-9_-]+)/.exec(setCookie);
  assert.ok(m?.[1] !== undefined, `no session cookie in ${JSON.stringify(setCookie)}`);
  const cookie = m[1];
  const s = await fetch(`${base}/api/v1/session`, { headers: { cookie } });
  assert.equal(s.status, 200);
  const body = (await s.json()) as { csrf?: string };
  assert.equal(typeof body.csrf, 'string');
  return { cookie, setCookie, csrf: body.csrf ?? '' };
}
