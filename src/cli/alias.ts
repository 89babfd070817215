/**
 * `postseal alias add|list|remove`: the alias half of the address table (store/aliases.ts;
 * resolution in store/resolve.ts). `alias add sales@example.org alice@example.org bob@example.org`;
 * `@example.org` as the address is that domain's catch-all alias. Works while `serve` runs (WAL):
 * the server reads the table at every RCPT, so a change counts at the next one.
 */
import type { Command } from 'commander';
import { ConfigError } from '../errors.js';
import { withReader, withStore, DATA_FLAG, STORE_FLAG, type StoreFlags } from './common.js';

export function registerAlias(program: Command): void {
  const alias = program.command('alias').description('manage aliases (local addresses that deliver to users, other aliases or external addresses)');
  alias
    .command('add')
    .description('add targets to an alias (created if new); @domain = that domain\'s catch-all alias')
    .argument('<address>', 'local@domain, or @domain')
    .argument('<targets...>', 'local@domain: a user, another alias or an external address')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .action(async (address: string, targets: string[], flags: StoreFlags) => {
      const added = await withStore(flags, (store) => store.addAlias(address, targets).catch(badAlias('alias add')));
      process.stdout.write(`${address.trim().toLowerCase()}: ${added} target${added === 1 ? '' : 's'} added\n`);
    });
  alias
    .command('list')
    .option('--json', 'JSON: [{ address, targets }]')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .action(async (flags: StoreFlags & { json?: boolean }) => {
      await withReader(flags, async (store) => {
        const all = await store.listAliases();
        if (flags.json) {
          process.stdout.write(JSON.stringify(all, null, 2) + '\n');
          return;
        }
        for (const a of all) process.stdout.write(`${a.address} -> ${a.targets.join(', ')}\n`);
      });
    });
  alias
    .command('remove')
    .description('remove one target of an alias, or the whole alias')
    .argument('<address>')
    .argument('[target]')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .action(async (address: string, target: string | undefined, flags: StoreFlags) => {
      const n = await withStore(flags, (store) => store.removeAlias(address, target).catch(badAlias('alias remove')));
      if (n === 0) {
        process.stderr.write(`postseal: no alias ${address}${target === undefined ? '' : ` -> ${target}`}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`removed ${n} target${n === 1 ? '' : 's'} of ${address.trim().toLowerCase()}\n`);
    });
}

/** A malformed address is a usage mistake (exit 2), not a store failure. */
function badAlias(cmd: string): (err: unknown) => never {
  return (err) => {
    if (err instanceof Error && 'code' in err && err.code === 'STORE_BAD_ALIAS') throw new ConfigError(`${cmd}: ${err.message}`);
    throw err;
  };
}
