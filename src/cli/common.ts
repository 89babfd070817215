/** Small helpers shared by the CLI commands: reading secrets, collecting repeated flags, opening the store. */
import { createInterface } from 'node:readline';
import { UsageError } from '../errors.js';
import { openSqliteStore, openSqliteStoreReadOnly, type Store, type StoreReader } from '../store/index.js';

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** One data-dir default, the config schema's (serve's dataDir). */
export { DEFAULT_DATA_DIR } from '../config.js';

/** Reads all of stdin as text (for --password-stdin); trailing newline removed. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Prompts on the terminal without echo. */
export async function promptSecret(question: string): Promise<string> {
  if (!process.stdin.isTTY) throw new UsageError('no terminal to prompt on: use --password-stdin');
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  const out = rl as unknown as { _writeToOutput: (s: string) => void };
  process.stderr.write(question);
  out._writeToOutput = () => {};
  const answer = await new Promise<string>((resolve) => rl.question('', resolve));
  rl.close();
  process.stderr.write('\n');
  return answer;
}

/** Opens the store read-write for one command and closes it whatever happens. */
export async function withStore<T>(dataDir: string, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openSqliteStore(dataDir);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Opens the store read-only (safe while `serve` runs) for one command and closes it. */
export async function withReader<T>(dataDir: string, fn: (store: StoreReader) => Promise<T> | T): Promise<T> {
  const store = openSqliteStoreReadOnly(dataDir);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
