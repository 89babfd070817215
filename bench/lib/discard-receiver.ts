/**
 * The receiver of the outbound benches: postseal's own server on 127.0.0.1:0 with STARTTLS (the
 * certificate given) and a sink that counts and discards, so the sender's cost is what is measured.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultConfig } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { startServe, type RunningServer } from '../../src/serve.js';
import type { IncomingMessage } from '../../src/types.js';

export interface DiscardReceiver {
  server: RunningServer;
  port: number;
  /** Connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

export async function startDiscardReceiver(opts: { dir: string; certPem: string; keyPem: string; domains: string[]; onAccept?: (m: IncomingMessage) => void }): Promise<DiscardReceiver> {
  await mkdir(opts.dir, { recursive: true });
  const certFile = join(opts.dir, 'cert.pem');
  const keyFile = join(opts.dir, 'key.pem');
  await writeFile(certFile, opts.certPem);
  await writeFile(keyFile, opts.keyPem, { mode: 0o600 });
  const cfg = defaultConfig();
  cfg.dataDir = join(opts.dir, 'receiver');
  cfg.hostname = 'mx.bench.test';
  cfg.domains = opts.domains;
  cfg.listeners = { mx: { address: '127.0.0.1:0', tls: 'may', auth: 'none', maxConnections: 2000 }, submission: null, submissions: null };
  cfg.tls = { ...cfg.tls, cert: certFile, key: keyFile, selfSigned: false };
  cfg.log = { level: 'silent' };
  cfg.recipients.catchAll = true; // the benches write to addresses that are not users
  cfg.auth.verify = false; // the sender's cost is measured, not the receiver's DNS
  const server = await startServe(cfg, {
    logger: silentLogger,
    sink: {
      accept: async (m) => {
        opts.onAccept?.(m);
        return { id: m.id };
      },
    },
  });
  const port = server.bound.find((b) => b.name === 'mx')?.port;
  if (port === undefined) {
    await server.close(0);
    throw new Error('receiver: no mx listener');
  }
  return { server, port, connections: () => server.server.stats.connections, close: () => server.close(500) };
}
