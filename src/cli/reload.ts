/**
 * `postseal reload [--store URL]`: tell every `serve` on a PostgreSQL store to reload its
 * certificate (each re-reads its own cert/key files, as SIGHUP does) — the operator renewed it.
 *
 * The store is the one every command takes (cli/common.ts storeSpecFrom): --store, else --data,
 * else POSTSEAL_STORE, else the default data directory.
 * With PostgreSQL the signal is published through store/pg/signals.ts (a durable generation and a
 * NOTIFY in one transaction: nodes listening reload now, nodes cut off reload when they reconnect).
 * With SQLite there is one node and its signal is SIGHUP: we say so and exit 2. We do not send it
 * ourselves: DATA/serve.pid may name a pid the system has since given to another process, whose
 * default action on SIGHUP is to die.
 */
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import type { PgSignals } from '../store/pg/signals.js';
import { describeStore } from '../store/spec.js';
import { DATA_FLAG, STORE_FLAG, storeSpecFrom, type StoreFlags } from './common.js';
import { join } from 'node:path';
import { OWNER_FILE } from '../store/owner.js';

/** Publishes 'certificates' on the store's signal channel; resolves with the new generation. */
export async function reloadCertificates(url: string, opts: { passwordFile?: string | null; detail?: string } = {}): Promise<number> {
  // Loaded here, not at the top: the other commands start without the PostgreSQL driver.
  const { openPgSignals } = await import('../store/pg/signals.js');
  const signals = await openPgSignals(url, { passwordFile: opts.passwordFile ?? null });
  try {
    return await signals.publish('certificates', opts.detail ?? 'postseal reload');
  } finally {
    await signals.close();
  }
}

/**
 * serve's side: follow the store's 'certificates' signal and reload as SIGHUP does (`reload` is
 * the same call). Each signal is logged once before the reload (event 'signal', signal 'store',
 * with its generation and how it came: a NOTIFY, or the catch-up after a reconnect); the reload's
 * own `tls-reload` line follows. Rejects (STORE_UNAVAILABLE) when PostgreSQL cannot be reached.
 */
export async function followReloadSignals(url: string, opts: { passwordFile?: string | null; from: string; logger: Logger; reload: () => Promise<unknown> }): Promise<PgSignals> {
  const { openPgSignals } = await import('../store/pg/signals.js');
  const signals = await openPgSignals(url, { passwordFile: opts.passwordFile ?? null, from: opts.from, logger: opts.logger });
  signals.subscribe('certificates', (e) => {
    opts.logger.info({ event: 'signal', signal: 'store', kind: e.kind, generation: e.generation, via: e.via, from: e.from, detail: e.detail }, 'reload signal from the store: reloading the certificate');
    void opts.reload();
  });
  return signals;
}

export function registerReload(program: Command): void {
  program
    .command('reload')
    .description('make every serve on a PostgreSQL store reload its certificate files (as SIGHUP does for one)')
    .option(...STORE_FLAG)
    .option(...DATA_FLAG)
    .option('--detail <text>', 'a note carried with the signal (logged by every node)')
    .action(async (flags: StoreFlags & { detail?: string }) => {
      const spec = storeSpecFrom(flags);
      if (spec.kind === 'sqlite') {
        throw new UsageError(
          `${describeStore(spec)} is a single-node store: send its serve SIGHUP to reload the certificate (kill -HUP "$(cat ${join(spec.dir, OWNER_FILE)})"); reload signals the nodes of a PostgreSQL store`,
        );
      }
      const generation = await reloadCertificates(spec.url, { detail: flags.detail });
      process.stdout.write(`reload: certificates signal ${generation} published on ${describeStore(spec)}; every serve on it reloads its certificate files\n`);
    });
}
