/** `postseal user add|list|remove`: submission accounts, stored as scrypt hashes. */
import type { Command } from 'commander';
import { isValidMailbox } from '../protocol/command.js';
import { openSqliteStore, openSqliteStoreReadOnly } from '../store/index.js';
import { ConfigError } from '../errors.js';
import { DEFAULT_DATA_DIR, promptSecret, readStdin } from './common.js';

export function registerUser(program: Command): void {
  const user = program.command('user').description('manage submission users');
  user
    .command('add')
    .argument('<address>', 'login, an email address')
    .option('--data <dir>', 'data directory', DEFAULT_DATA_DIR)
    .option('--password-stdin', 'read the password from standard input')
    .option('--update', 'replace the password of an existing user')
    .action(async (address: string, flags: { data: string; passwordStdin?: boolean; update?: boolean }) => {
      if (!isValidMailbox(address)) throw new ConfigError(`user add: ${JSON.stringify(address)} is not an email address`);
      const password = flags.passwordStdin ? await readStdin() : await promptSecret(`password for ${address}: `);
      if (password.length < 8) throw new ConfigError('user add: the password must have at least 8 characters');
      const store = await openSqliteStore(flags.data);
      try {
        if (flags.update) {
          if (!(await store.setPassword(address, password))) throw new ConfigError(`user add: no user ${address} to update`);
        } else {
          await store.addUser(address, password);
        }
        process.stdout.write(`${flags.update ? 'updated' : 'added'} ${address}\n`);
      } finally {
        await store.close();
      }
    });
  user
    .command('list')
    .option('--data <dir>', 'data directory', DEFAULT_DATA_DIR)
    .action(async (flags: { data: string }) => {
      const store = openSqliteStoreReadOnly(flags.data);
      try {
        for (const u of store.listUsers()) process.stdout.write(u + '\n');
      } finally {
        await store.close();
      }
    });
  user
    .command('remove')
    .argument('<address>')
    .option('--data <dir>', 'data directory', DEFAULT_DATA_DIR)
    .action(async (address: string, flags: { data: string }) => {
      const store = await openSqliteStore(flags.data);
      try {
        if (!(await store.removeUser(address))) {
          process.stderr.write(`postseal: no user ${address}\n`);
          process.exitCode = 1;
          return;
        }
        process.stdout.write(`removed ${address}\n`);
      } finally {
        await store.close();
      }
    });
}
