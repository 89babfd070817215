/**
 * `postseal token create|list|revoke`: API tokens for scripts (`Authorization: Bearer TOKEN` on
 * the HTTP API of `serve --http`). The token is printed once, by create; the store keeps only its
 * SHA-256 (store/tokens.ts). Safe while serve runs (the store's writer and WAL).
 */
import type { Command } from 'commander';
import { withReader, withStore, DATA_FLAG, STORE_FLAG, type StoreFlags } from './common.js';

export function registerToken(program: Command): void {
  const token = program.command('token').description('API tokens for the HTTP API (serve --http)');
  token
    .command('create')
    .description('make a token and print it once (use it as Authorization: Bearer TOKEN)')
    .requiredOption('--name <name>', 'a name for the token (unique among live tokens)')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .action(async (flags: { name: string; data: string }) => {
      const made = await withStore(flags, (store) => store.createApiToken(flags.name));
      process.stdout.write(made.token + '\n');
      process.stderr.write(`token ${made.info.name} (id ${made.info.id}) created; it is shown only now\n`);
    });
  token
    .command('list')
    .option('--json', 'JSON array of { id, name, createdAt, lastUsedAt, revoked }')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .action(async (flags: { json?: boolean; data: string }) => {
      await withReader(flags, async (store) => {
        const all = await store.listApiTokens();
        if (flags.json === true) {
          process.stdout.write(JSON.stringify(all, null, 2) + '\n');
          return;
        }
        for (const t of all) process.stdout.write(`${t.id}  ${t.name}  created ${t.createdAt}  last used ${t.lastUsedAt ?? 'never'}${t.revoked ? '  revoked' : ''}\n`);
      });
    });
  token
    .command('revoke')
    .argument('<name-or-id>')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .action(async (which: string, flags: StoreFlags) => {
      const n = await withStore(flags, (store) => store.revokeApiToken(which));
      if (n === 0) {
        process.stderr.write(`postseal: no live token named ${which} (or with that id)\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`revoked ${which}\n`);
    });
}
