/**
 * `postseal queue list|show|retry|delete`: the queue (safe while the server runs): remote
 * deliveries, and local mailboxes handed to a delivery target (shown `via TARGET`, e.g.
 * `via lmtp:127.0.0.1:24`, where a remote row goes to its recipient's MX domain).
 */
import type { Command } from 'commander';
import type { QueueAttempt, QueueEntry } from '../store/index.js';
import type { TlsOutcome } from '../types.js';
import { withReader, withStore, DATA_FLAG, STORE_FLAG, type StoreFlags } from './common.js';

function tlsText(t: TlsOutcome | null): string {
  return t ? ` tls=${t.levelReached}/${t.levelAsked}${t.protocol ? ` ${t.protocol}` : ''}${t.whyNot ? ` (${t.whyNot})` : ''}` : '';
}

function line(e: QueueEntry): string {
  // A finished row (delivered, failed) has no next attempt.
  const next = e.status === 'queued' || e.status === 'deferred' ? `  next=${e.nextAttemptAt}` : '';
  const via = e.target !== null ? ` via ${e.target}` : '';
  return `${e.id}  ${e.status.padEnd(9)} <${e.mailFrom}> -> <${e.recipient}>${via}  attempts=${e.attempts}${next}${tlsText(e.lastTls)}${e.lastError ? `  last: ${e.lastError}` : ''}${e.requireTls ? '  REQUIRETLS' : ''}`;
}

function attemptLine(a: QueueAttempt): string {
  // Which node made the attempt (several nodes on one PostgreSQL: who tried what).
  return `${a.at}  <${a.recipient}>  ${a.outcome}${a.node ? ` by ${a.node}` : ''}${tlsText(a.tls)}${a.error ? `  ${a.error}` : ''}${a.nextAttemptAt ? `  next=${a.nextAttemptAt}` : ''}`;
}

export function registerQueue(program: Command): void {
  const queue = program.command('queue').description('inspect and manage the queue (outbound mail and local handoffs)');
  queue
    .command('list')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .option('--status <status>', 'queued|deferred|delivered|failed')
    .option('--json', 'JSON output')
    .action(async (flags: StoreFlags & { status?: string; json?: boolean }) => {
      await withReader(flags, async (store) => {
        const all = await store.listQueue();
        const rows = flags.status ? all.filter((e) => e.status === flags.status) : all;
        if (flags.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        else if (rows.length === 0) process.stdout.write('queue is empty\n');
        else for (const e of rows) process.stdout.write(line(e) + '\n');
      });
    });
  queue
    .command('show')
    .argument('<id>', 'message id')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .option('--json', 'JSON output')
    .action(async (id: string, flags: StoreFlags & { json?: boolean }) => {
      await withReader(flags, async (store) => {
        const rows = await store.listQueue({ id });
        const msg = await store.getMessage(id);
        if (rows.length === 0 && !msg) {
          process.stderr.write(`postseal: no queued message ${id}\n`);
          process.exitCode = 1;
          return;
        }
        const attempts = await store.listAttempts(id);
        if (flags.json) process.stdout.write(JSON.stringify({ message: msg?.summary ?? null, recipients: rows, attempts }, null, 2) + '\n');
        else {
          if (msg) process.stdout.write(`${id}  received ${msg.summary.receivedAt}  from <${msg.summary.mailFrom}>  ${msg.summary.size} bytes\n`);
          for (const e of rows) process.stdout.write('  ' + line(e) + '\n');
          if (attempts.length > 0) process.stdout.write('  attempts:\n');
          for (const a of attempts) process.stdout.write('    ' + attemptLine(a) + '\n');
        }
      });
    });
  queue
    .command('retry')
    .description('make deferred mail due now (all, or one message); a running server picks it up at its next pass')
    .argument('[id]', 'message id')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .action(async (id: string | undefined, flags: StoreFlags) => {
      await withStore(flags, async (store) => {
        const n = await store.retryQueued(id);
        process.stdout.write(`${n} recipient(s) due now\n`);
      });
    });
  queue
    .command('delete')
    .argument('<id>', 'message id')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .option('--recipient <address>', 'only this recipient')
    .action(async (id: string, flags: StoreFlags & { recipient?: string }) => {
      await withStore(flags, async (store) => {
        const n = await store.deleteQueued(id, flags.recipient);
        if (n === 0) process.exitCode = 1;
        process.stdout.write(`${n} queue row(s) deleted\n`);
      });
    });
}
