/**
 * Starts a real postseal server for a test: SQLite store in a fresh temp dir, a certificate
 * issued by a fresh test CA for "localhost" and 127.0.0.1, every listener on 127.0.0.1:0.
 * Recipients are catch-all unless `checkRecipients` is set: most tests are about something else
 * and send to any address at a local domain; the recipient tests (and transcripts with
 * `!config recipients.catchAll=false`) see the real default, known users and postmaster only.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig, type ServeConfig } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { startServe, type RunningServer } from '../../src/serve.js';
import type { Logger } from '../../src/server/types.js';
import type { SqliteStore } from '../../src/store/index.js';
import { issueCert, makeTestCa, writeKeyPair, type TestCa } from './certs.js';

/** startServe on a data directory opens the SQLite store: its reads answer synchronously. */
export type SqliteRunningServer = Omit<RunningServer, 'store'> & { store: SqliteStore };

export interface TestServer {
  running: SqliteRunningServer;
  dataDir: string;
  ca: TestCa;
  caPem: string;
  certFile: string;
  keyFile: string;
  port(name: 'mx' | 'submission' | 'submissions'): number;
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** Edit the config before start (limits, listeners, ...). */
  configure?: (cfg: ServeConfig) => void;
  /** false: start with no certificate configured and no self-signed fallback allowed. */
  withCert?: boolean;
  logger?: Logger;
  users?: Array<{ address: string; password: string; senders?: string[] }>;
  /** true: only known users (and postmaster) are local recipients, as `serve` does by default. */
  checkRecipients?: boolean;
}

let shared: { ca: TestCa; pair: { certPem: string; keyPem: string } } | null = null;

async function pki(): Promise<{ ca: TestCa; pair: { certPem: string; keyPem: string } }> {
  if (!shared) {
    const ca = await makeTestCa();
    const pair = await issueCert(ca, { names: ['localhost', '127.0.0.1'] });
    shared = { ca, pair };
  }
  return shared;
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'postseal-test-'));
  const { ca, pair } = await pki();
  const files = await writeKeyPair(join(dataDir, 'certs'), pair);
  const cfg = defaultConfig();
  cfg.dataDir = dataDir;
  cfg.hostname = 'mail.postseal.test';
  cfg.domains = ['postseal.test'];
  if (opts.withCert === false) {
    cfg.tls.selfSigned = false;
  } else {
    cfg.tls.cert = files.certFile;
    cfg.tls.key = files.keyFile;
  }
  for (const l of Object.values(cfg.listeners)) if (l) l.address = '127.0.0.1:0';
  cfg.log.level = 'silent';
  cfg.recipients.catchAll = opts.checkRecipients !== true;
  opts.configure?.(cfg);
  const running = await startServe(cfg, { logger: opts.logger ?? silentLogger });
  for (const u of opts.users ?? []) await running.store.addUser(u.address, u.password, { senders: u.senders ?? [] });
  return {
    // The test server always runs on SQLite (cfg.dataDir, no store URL).
    running: running as SqliteRunningServer,
    dataDir,
    ca,
    caPem: ca.certPem,
    certFile: files.certFile,
    keyFile: files.keyFile,
    port(name) {
      const b = running.bound.find((l) => l.name === name);
      if (!b) throw new Error(`listener ${name} is not running`);
      return b.port;
    },
    async close() {
      await running.close(1000);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
