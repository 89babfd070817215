/** `postseal serve`: flags → config → startServe; signals for reload and graceful stop. */
import type { Command } from 'commander';
import { configFromFlags, serveFlags, STORE_ENV, storeSpecOf, WEBHOOK_SECRET_ENV, type ServeConfig } from '../config.js';
import { startServe } from '../serve.js';
import { createHttpContext } from '../http/context.js';
import { startHttp, type RunningHttp } from '../http/server.js';
import { createMetrics } from '../http/metrics.js';
import { collect } from './common.js';
import { followReloadSignals } from './reload.js';

/** Commander's options object: one attribute per flag of the schema, plus --config. */
export type ServeFlags = Record<string, unknown> & { config?: string };

/** Flags → config: defaults, then --config FILE, then POSTSEAL_STORE, then the flags (all through the schema). */
export function flagsToConfig(flags: ServeFlags): ServeConfig {
  const cfg = configFromFlags(flags);
  // The store: --store wins, then POSTSEAL_STORE, then store.url of the config file.
  const storeEnv = process.env[STORE_ENV];
  if (flags.store === undefined && storeEnv !== undefined && storeEnv !== '') cfg.store.url = storeEnv;
  // The webhook secret stays off the command line (ps shows it): the config file, or this variable.
  const env = process.env[WEBHOOK_SECRET_ENV];
  if (cfg.delivery.webhook.secret === null && env !== undefined && env !== '') cfg.delivery.webhook.secret = env;
  return cfg;
}

export function registerServe(program: Command): void {
  const cmd = program
    .command('serve')
    .description('run the mail server: mx (STARTTLS may), submission (STARTTLS required + AUTH), submissions (implicit TLS + AUTH)')
    .option('--config <file>', 'JSON config file (flags override it; keys: docs/config.md)');
  // Every other flag is written once, on the config key it sets (src/config/schema.ts).
  for (const f of serveFlags()) {
    const spec = `${f.spec.name}${f.spec.arg ? ' ' + f.spec.arg : ''}`;
    const help = `${f.spec.help} [${f.path.join('.')}]`;
    if (f.repeatable) cmd.option(spec, help, collect);
    else cmd.option(spec, help);
  }
  cmd
    .action(async (flags: ServeFlags) => {
      const cfg = flagsToConfig(flags);
      // Metrics (issue 14): the observers go into the server, the runner and the store at start.
      const metrics = createMetrics();
      const running = await startServe(cfg, { observers: metrics.observers });
      metrics.attach(running);
      // The web console and API (issue 14). Started here, not in startServe: http/ sits above
      // serve.ts in the import order (a face, like cli/). A port in use stops serve (exit 1).
      const httpCtx = createHttpContext(cfg, running, { metrics: metrics.registry });
      let web: RunningHttp | null = null;
      if (cfg.http.address !== 'off') {
        try {
          web = await startHttp(httpCtx, cfg.http.address);
        } catch (err) {
          await running.close(0);
          throw err;
        }
      }
      // Every reload (SIGHUP or the file watcher) is logged once, here, with what is now served.
      running.certs.onReload((r) => {
        if (r.ok) running.logger.info({ event: 'tls-reload', changed: r.changed, fingerprint256: r.certificate.fingerprint256 }, 'certificate reloaded');
        else running.logger.error({ event: 'tls-reload', error: r.error.message, changed: r.changed }, 'certificate reload failed; keeping the previous one');
      });
      // SIGHUP: reload the certificate without dropping live sessions.
      process.on('SIGHUP', () => {
        running.logger.info({ event: 'signal', signal: 'SIGHUP' }, 'SIGHUP: reloading the certificate');
        void running.certs.reload();
      });
      if (cfg.tls.cert || cfg.tls.certificates.length > 0) running.certs.watch();
      // Several nodes on one PostgreSQL store: `postseal reload` reaches every node (store/pg/signals.ts)
      // and does here what SIGHUP does. A node that cannot listen does not start (it would miss renewals).
      const storeSpec = storeSpecOf(cfg);
      let signals: { close(): Promise<void> } | null = null;
      if (storeSpec.kind === 'postgres') {
        try {
          signals = await followReloadSignals(storeSpec.url, { passwordFile: cfg.store.passwordFile, from: running.store.nodeId, logger: running.logger, reload: () => running.certs.reload() });
        } catch (err) {
          await Promise.all([web?.close(), running.close(0)]);
          throw err;
        }
      }
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        running.logger.info({ event: 'shutdown', signal }, 'stopping: 421 to idle sessions, finishing transactions in flight');
        httpCtx.stopping = true;
        Promise.all([web?.close(), running.close(), signals?.close()]).then(
          () => process.exit(0),
          (err: unknown) => {
            running.logger.error({ event: 'shutdown', error: err instanceof Error ? err.message : String(err) }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      // "listening" means ready, so it comes last: a supervisor that signals as soon as it reads
      // these lines must find the handlers in place (SIGTERM/SIGHUP would otherwise kill us).
      for (const b of running.bound) {
        const host = b.host.includes(':') ? `[${b.host}]` : b.host;
        process.stdout.write(`listening ${b.name} ${host}:${b.port} tls=${b.tls}\n`);
      }
      if (web !== null) {
        const host = web.host.includes(':') ? `[${web.host}]` : web.host;
        // The sender test's replies link to /sender-test/ID on this listener (a wildcard address: the hostname).
        running.senderTest?.setBaseUrl(`${web.secure ? 'https' : 'http'}://${web.host === '0.0.0.0' || web.host === '::' ? cfg.hostname : host}:${web.port}`);
        // tls=none: http://; tls=implicit: https:// (a non-loopback address).
        process.stdout.write(`listening http ${host}:${web.port} tls=${web.secure ? 'implicit' : 'none'}\n`);
      }
    });
}
