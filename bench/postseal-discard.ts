/**
 * postseal's protocol engine alone: startServe with a sink that discards every message (no
 * store, no fsync). Prints "listening PORT" once bound on 127.0.0.1:0; stops on SIGTERM/SIGINT.
 * Usage: node --import tsx bench/postseal-discard.ts --cert C --key K --data DIR
 * It loads the compiled server (dist/), the same code the durable peer runs.
 */
import { defaultConfig } from '../dist/config.js';
import { startServe } from '../dist/serve.js';

function arg(name: string): string {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (!v) throw new Error(`postseal-discard: ${name} is required`);
  return v;
}

const cfg = defaultConfig();
cfg.dataDir = arg('--data');
cfg.hostname = 'bench.localhost';
cfg.listeners = { mx: { address: '127.0.0.1:0', tls: 'may', auth: 'none' }, submission: null, submissions: null };
cfg.tls = { ...cfg.tls, cert: arg('--cert'), key: arg('--key'), selfSigned: false };
cfg.log = { level: 'silent' };

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
