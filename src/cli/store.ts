/**
 * `postseal store migrate|copy`: the store's schema and moving an installation (issue 13).
 * - `store migrate [--store URL | --data DIR]`: creates or migrates the schema (PostgreSQL: under
 *   an advisory lock, safe while nodes start) and prints the versions from and to.
 * - `store copy --from sqlite:DIR --to postgres://…`: copies an existing SQLite installation into
 *   PostgreSQL (store/pg/copy.ts), prints the counts per table and verifies them.
 * Parsing and printing only.
 */
import type { Command } from 'commander';
import { PostsealError, UsageError } from '../errors.js';
import { describeStore, migrateStore, parseStoreSpec, type StoreSpec } from '../store/open.js';
import { COPY_TABLES, copySqliteToPg } from '../store/pg/copy.js';
import { DATA_FLAG, STORE_FLAG, storeSpecFrom, type StoreFlags } from './common.js';

function specOf(text: string, flag: string): StoreSpec {
  try {
    return parseStoreSpec(text);
  } catch (err) {
    if (err instanceof PostsealError && err.code === 'STORE_BAD_URL') throw new PostsealError('STORE_BAD_URL', `${flag}: ${err.message}`);
    throw err;
  }
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} ${text} is not a positive number`);
  return n;
}

export function registerStore(program: Command): void {
  const store = program.command('store').description('the store: schema migration, moving an installation to PostgreSQL');
  store
    .command('migrate')
    .description('create or migrate the schema of the store to this version (serve also does it at start)')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .action(async (flags: StoreFlags) => {
      const spec = storeSpecFrom(flags);
      const { from, to } = await migrateStore(spec);
      const where = describeStore(spec);
      process.stdout.write(from === to ? `${where}: schema version ${to}, up to date\n` : `${where}: schema version ${from} -> ${to}\n`);
    });
  store
    .command('copy')
    .description('copy a SQLite installation (stop its serve first) into PostgreSQL: messages and bodies, mailboxes, queue and attempts, users with password hashes, aliases, API tokens, MTA-STS cache, TLS-RPT; verified at the end')
    .requiredOption('--from <store>', 'the SQLite store: sqlite:DIR or a data directory')
    .requiredOption('--to <url>', 'the PostgreSQL store: postgres://USER@HOST:PORT/DB (password from PGPASSWORD or ~/.pgpass)')
    .option('--append', 'copy into a database that already holds messages (adds what is missing; a message already there, by id, is skipped)')
    .option('--batch <n>', 'messages per transaction (also at most 32 MiB of them)', '500')
    .option('--quiet', 'no progress lines on stderr')
    .action(async (flags: { from: string; to: string; append?: boolean; batch: string; quiet?: boolean }) => {
      const from = specOf(flags.from, '--from');
      const to = specOf(flags.to, '--to');
      if (from.kind !== 'sqlite') throw new UsageError('store copy: --from takes the SQLite store (sqlite:DIR or a data directory)');
      if (to.kind !== 'postgres') throw new UsageError('store copy: --to takes a PostgreSQL URL (postgres://USER@HOST:PORT/DB)');
      const r = await copySqliteToPg(from.dir, to.url, {
        append: flags.append === true,
        batchMessages: positiveInt(flags.batch, '--batch'),
        onProgress: flags.quiet === true ? null : (line) => void process.stderr.write(`${line}\n`),
      });
      process.stdout.write(`copied ${r.from} -> ${r.to}\n`);
      const width = Math.max(...COPY_TABLES.map((t) => t.length));
      for (const t of COPY_TABLES) {
        const c = r.tables[t];
        process.stdout.write(`${t.padEnd(width)}  source ${c.source}  copied ${c.copied}  in target ${c.target}\n`);
      }
      process.stdout.write(`${'bytes'.padEnd(width)}  source ${r.bytes.source}  in target ${r.bytes.target}\n`);
      if (r.verified) process.stdout.write('verified: every source row is in the target\n');
      else {
        process.stdout.write('NOT verified: the target lacks rows of the source (see the counts above)\n');
        process.exitCode = 1;
      }
    });
}
