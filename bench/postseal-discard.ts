/**
 * postseal's protocol engine alone: startServe with a sink that discards every message (no
 * store, no fsync). Prints "listening PORT" once bound on 127.0.0.1:0; stops on SIGTERM/SIGINT.
 * Usage: node --import tsx bench/postseal-discard.ts --cert C --key K --data DIR
 * It loads the compiled server from $POSTSEAL_DIST (default ../dist), the same build the durable
 * peer runs.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as ConfigModule from '../dist/config.js';
import type * as ServeModule from '../dist/serve.js';

const dist = process.env.POSTSEAL_DIST ?? new URL('../dist', import.meta.url).pathname;
const { defaultConfig } = (await import(pathToFileURL(join(dist, 'config.js')).href)) as typeof ConfigModule;
const { startServe } = (await import(pathToFileURL(join(dist, 'serve.js')).href)) as typeof ServeModule;

function arg(name: string): string {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (!v) throw new Error(`postseal-discard: ${name} is required`);
  return v;
}

const cfg = defaultConfig();
cfg.dataDir = arg('--data');
cfg.hostname = 'bench.localhost';
cfg.listeners = { mx: { address: '127.0.0.1:0', tls: 'may', auth: 'none', maxConnections: 2000 }, submission: null, submissions: null };
cfg.tls = { ...cfg.tls, cert: arg('--cert'), key: arg('--key'), selfSigned: false };
cfg.log = { level: 'silent' };
cfg.recipients.catchAll = true; // the load generator writes to bench@localhost, not a user
cfg.auth.verify = false; // the protocol engine alone: no SPF/DKIM/DMARC DNS lookups per message

const running = await startServe(cfg, { sink: { accept: async (m) => ({ id: m.id }) } });
const mx = running.bound.find((b) => b.name === 'mx');
process.stdout.write(`listening ${mx?.port}\n`);
let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  void running.close(500).then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
