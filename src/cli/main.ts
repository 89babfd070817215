#!/usr/bin/env node
/**
 * The `postseal` command line. Argument parsing and printing only: every command is a library
 * call (startServe, the store, ...). Exit status: 0 success, 1 failure, 2 usage or config error.
 */
import { Command, CommanderError } from 'commander';
import { registerServe } from './serve.js';
import { registerMailbox } from './mailbox.js';
import { registerUser } from './user.js';
import { registerAlias } from './alias.js';
import { registerCheck } from './check.js';
import { registerSend } from './send.js';
import { registerQueue } from './queue.js';
import { registerPolicy } from './policy.js';
import { registerPolicyExplain } from './policy-explain.js';
import { registerReport } from './report.js';
import { registerDkim } from './dkim.js';
import { registerToken } from './token.js';
import { registerStore } from './store.js';
import { registerReload } from './reload.js';
import { ConfigError, PostsealError, UsageError } from '../errors.js';

const program = new Command();
program
  .name('postseal')
  .description('Mail transfer toolkit whose core is STARTTLS done right: serve, send, check')
  .version('0.1.0')
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(str) });

registerServe(program);
registerMailbox(program);
registerUser(program);
registerAlias(program);
registerCheck(program);
registerSend(program);
registerQueue(program);
// The `policy` group: refresh and forget here; other subcommands are added to the group it returns.
registerPolicyExplain(registerPolicy(program));
registerReport(program);
registerDkim(program);
registerToken(program);
registerStore(program);
registerReload(program);

// A reader that stops early (`postseal mailbox list | head -1`) closes the pipe: the output it
// did not want is not an error. Leave quietly, as a program killed by SIGPIPE would, without a
// stack trace; any other stdout failure is reported once.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  process.stderr.write(`postseal: cannot write to stdout: ${err.message}\n`);
  process.exit(1);
});

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit through here with code 0.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (err instanceof ConfigError || err instanceof UsageError) {
      process.stderr.write(`postseal: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    if (err instanceof PostsealError) {
      process.stderr.write(`postseal: ${err.code}: ${err.message}\n`);
      process.exitCode = 1;
      return;
    }
    process.stderr.write(`postseal: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}

void main();
