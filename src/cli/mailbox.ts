/** `postseal mailbox list|show`: read the local mailboxes (safe while the server runs). */
import type { Command } from 'commander';
import type { ListMessagesOptions } from '../store/index.js';
import type { MessageSummary } from '../types.js';
import { withReader, DATA_FLAG, STORE_FLAG, type StoreFlags } from './common.js';

function tlsText(m: MessageSummary): string {
  return m.tls ? `${m.tls.protocol} ${m.tls.cipher}` : 'no TLS';
}

/** The stored verification verdicts in one line (`spf=pass dkim=pass dmarc=pass arc=none`). */
function authText(m: MessageSummary): string {
  const a = m.authResults;
  if (a === null) return '';
  const dkim = a.dkim.length === 0 ? 'none' : a.dkim.map((d) => d.result).join(',');
  return `  spf=${a.spf.result} dkim=${dkim}${a.dkimOmitted > 0 ? `(+${a.dkimOmitted})` : ''} dmarc=${a.dmarc.result} arc=${a.arc.result}${m.quarantine ? '  QUARANTINE' : ''}`;
}

export function registerMailbox(program: Command): void {
  const mailbox = program.command('mailbox').description('read local mailboxes');
  mailbox
    .command('list')
    .description('list received messages (with a local recipient), newest first, with the TLS facts of the session that brought each')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .option('--json', 'JSON output')
    .option('--limit <n>', 'at most this many', '100')
    .option('--mailbox <address>', 'only messages for this local address')
    .option('--all', 'also messages only relayed out (no local recipient)')
    .action(async (flags: StoreFlags & { json?: boolean; limit: string; mailbox?: string; all?: boolean }) => {
      await withReader(flags, async (store) => {
        const opts: ListMessagesOptions = { limit: Number(flags.limit) || 100, localOnly: flags.all !== true };
        if (flags.mailbox) opts.mailbox = flags.mailbox;
        const list = await store.listMessages(opts);
        if (flags.json) {
          process.stdout.write(JSON.stringify(list, null, 2) + '\n');
          return;
        }
        if (list.length === 0) {
          process.stdout.write('no messages\n');
          return;
        }
        for (const m of list) {
          process.stdout.write(`${m.id}  ${m.receivedAt}  from <${m.mailFrom}>  to ${m.recipients.map((r) => `<${r}>`).join(', ')}  ${m.size} bytes  ${tlsText(m)}${m.authUser ? `  auth=${m.authUser}` : ''}${m.requireTls ? '  REQUIRETLS' : ''}${authText(m)}  via ${m.listener} from ${m.clientAddress}\n`);
        }
      });
    });
  mailbox
    .command('show')
    .description('print the stored message bytes (--json: its summary with the verification verdicts, and the message as text)')
    .argument('<id>', 'message id')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .option('--json', 'JSON output')
    .action(async (id: string, flags: StoreFlags & { json?: boolean }) => {
      await withReader(flags, async (store) => {
        const m = await store.getMessage(id);
        if (!m) {
          process.stderr.write(`postseal: no message ${id}\n`);
          process.exitCode = 1;
          return;
        }
        if (flags.json) {
          process.stdout.write(JSON.stringify({ ...m.summary, data: m.data.toString('utf8') }, null, 2) + '\n');
          return;
        }
        process.stdout.write(m.data);
      });
    });
}
