/**
 * `postseal user add|list|remove|senders`: submission accounts, stored as scrypt hashes, and the
 * addresses each may send as besides the login (`--sender`, repeatable: an address, '*@domain'
 * or '*'; `user senders ADDRESS --add P --remove P` changes them later, without options it
 * prints them). Users are also the local recipients the mx listener accepts (unless catch-all).
 */
import type { Command } from 'commander';
import { isValidMailbox } from '../protocol/command.js';
import { isSenderPattern } from '../store/address.js';
import { ConfigError } from '../errors.js';
import type { Store, StoreReader } from '../store/index.js';
import { collect, promptSecret, readStdin, withReader, withStore, DATA_FLAG, STORE_FLAG, type StoreFlags } from './common.js';

export function registerUser(program: Command): void {
  const user = program.command('user').description('manage submission users');
  user
    .command('add')
    .argument('<address>', 'login, an email address')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .option('--password-stdin', 'read the password from standard input')
    .option('--update', 'replace the password of an existing user')
    .option('--sender <pattern>', 'may also send as this address, *@domain or * (repeatable)', collect)
    .option('--admin', 'may also log in to the web console (serve --http)')
    .action(async (address: string, flags: StoreFlags & { passwordStdin?: boolean; update?: boolean; sender?: string[]; admin?: boolean }) => {
      if (!isValidMailbox(address)) throw new ConfigError(`user add: ${JSON.stringify(address)} is not an email address`);
      const senders = checkPatterns('user add', flags.sender ?? []);
      const password = flags.passwordStdin ? await readStdin() : await promptSecret(`password for ${address}: `);
      if (password.length < 8) throw new ConfigError('user add: the password must have at least 8 characters');
      await withStore(flags, async (store) => {
        if (flags.update) {
          if (!(await store.setPassword(address, password))) throw new ConfigError(`user add: no user ${address} to update`);
          if (senders.length > 0) await store.editSenders(address, { add: senders });
          if (flags.admin === true) await store.setAdmin(address, true);
        } else {
          await store.addUser(address, password, { senders, admin: flags.admin === true });
        }
        process.stdout.write(`${flags.update ? 'updated' : 'added'} ${address}\n`);
      });
    });
  user
    .command('list')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .action(async (flags: StoreFlags) => {
      await withReader(flags, async (store) => {
        for (const u of (await store.listUsers())) process.stdout.write(u + '\n');
      });
    });
  user
    .command('senders')
    .description('show or change the addresses a user may send as besides the login')
    .argument('<address>')
    .option('--add <pattern>', 'allow this address, *@domain or * (repeatable)', collect)
    .option('--remove <pattern>', 'no longer allow this pattern (repeatable)', collect)
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .action(async (address: string, flags: StoreFlags & { add?: string[]; remove?: string[] }) => {
      const add = checkPatterns('user senders', flags.add ?? []);
      const remove = flags.remove ?? [];
      const change = add.length + remove.length > 0 ? (store: Store) => store.editSenders(address, { add, remove }) : null;
      await changeThenShow(flags, address, change, (reader) => {
        for (const p of reader.senderPatterns(address)) process.stdout.write(p + '\n');
      });
    });
  user
    .command('admin')
    .description('grant (on) or withdraw (off) web console access; without on|off, print it')
    .argument('<address>')
    .argument('[state]', 'on or off')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .action(async (address: string, state: string | undefined, flags: StoreFlags) => {
      if (state !== undefined && state !== 'on' && state !== 'off') throw new ConfigError(`user admin: expected on or off, not ${JSON.stringify(state)}`);
      const change = state !== undefined ? (store: Store) => store.setAdmin(address, state === 'on') : null;
      await changeThenShow(flags, address, change, async (reader) => {
        process.stdout.write(`${address} admin ${(await reader.isAdmin(address)) ? 'on' : 'off'}\n`);
      });
    });
  user
    .command('remove')
    .argument('<address>')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .action(async (address: string, flags: StoreFlags) => {
      await withStore(flags, async (store) => {
        if (!(await store.removeUser(address))) {
          process.stderr.write(`postseal: no user ${address}\n`);
          process.exitCode = 1;
          return;
        }
        process.stdout.write(`removed ${address}\n`);
      });
    });
}

/**
 * `user senders` / `user admin`: apply `change` when one was asked (false: no such user), then
 * print the user's state through a reader; an unknown user is `no user` on stderr and exit 1.
 */
async function changeThenShow(data: StoreFlags, address: string, change: ((store: Store) => Promise<boolean>) | null, show: (reader: StoreReader) => void): Promise<void> {
  const found = (change === null || (await withStore(data, change))) && (await withReader(data, (reader) => {
    if (!reader.hasUser(address)) return false;
    show(reader);
    return true;
  }));
  if (!found) {
    process.stderr.write(`postseal: no user ${address}\n`);
    process.exitCode = 1;
  }
}

/** Lower-cased patterns, or a ConfigError naming the bad one. */
function checkPatterns(cmd: string, patterns: string[]): string[] {
  return patterns.map((raw) => {
    const p = raw.trim().toLowerCase();
    if (!isSenderPattern(p)) throw new ConfigError(`${cmd}: sender ${JSON.stringify(raw)} is not valid: expected local@domain, *@domain or *`);
    return p;
  });
}
