/** Small helpers shared by the CLI commands: reading secrets, collecting repeated flags, opening the store. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DEFAULT_DATA_DIR, STORE_ENV } from '../config.js';
import { PostsealError, UsageError } from '../errors.js';
import type { Store, StoreReader } from '../store/index.js';
import { openStore, openStoreReader, parseStoreSpec, type StoreSpec } from '../store/open.js';

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** One data-dir default, the config schema's (serve's dataDir). */
export { DEFAULT_DATA_DIR };

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

/** The store flags of a command (storeOptions). */
export interface StoreFlags {
  data?: string;
  store?: string;
}

/** `--data DIR` and `--store URL` of a command that reads or writes the store: `.option(...DATA_FLAG).option(...STORE_FLAG)`. */
export const DATA_FLAG = ['--data <dir>', `data directory of a SQLite store (default: ${DEFAULT_DATA_DIR})`] as const;
export const STORE_FLAG = ['--store <url>', `the store: postgres://USER@HOST:PORT/DB (password from PGPASSWORD or ~/.pgpass, never in the URL), sqlite:DIR or a data directory (default: $${STORE_ENV}, else --data)`] as const;

function parseFrom(text: string, where: string): StoreSpec {
  try {
    return parseStoreSpec(text);
  } catch (err) {
    // Which setting was bad; its text is not repeated (it may hold a password).
    if (err instanceof PostsealError && err.code === 'STORE_BAD_URL') throw new PostsealError('STORE_BAD_URL', `${where}: ${err.message}`);
    throw err;
  }
}

/**
 * The store a command works on: --store, else an explicit --data, else $POSTSEAL_STORE, else
 * `fallback` (the store a --config file names), else the default data directory.
 */
export function storeSpecFrom(flags: StoreFlags, fallback: StoreSpec | null = null): StoreSpec {
  if (flags.store !== undefined) return parseFrom(flags.store, '--store');
  if (flags.data !== undefined) return { kind: 'sqlite', dir: flags.data };
  const env = process.env[STORE_ENV];
  if (env !== undefined && env !== '') return parseFrom(env, STORE_ENV);
  return fallback ?? { kind: 'sqlite', dir: DEFAULT_DATA_DIR };
}

/** Opens the store read-write for one command and closes it whatever happens. */
export async function withStore<T>(where: StoreFlags | StoreSpec, fn: (store: Store) => Promise<T>): Promise<T> {
  const spec = 'kind' in where ? where : storeSpecFrom(where);
  // PostgreSQL wants a spool directory on this host; a one-shot command spools nothing of its
  // own, so a private temporary one, removed afterwards (not ./postseal-data in the cwd).
  const spoolDir = spec.kind === 'postgres' ? mkdtempSync(join(tmpdir(), 'postseal-cli-')) : undefined;
  try {
    // upgrade false: a one-shot command creates the schema in an empty database but leaves an
    // older one (live nodes on it) to `store migrate` or a starting serve.
    const store = await openStore(spec, spoolDir !== undefined ? { spoolDir, upgrade: false } : {});
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  } finally {
    if (spoolDir !== undefined) rmSync(spoolDir, { recursive: true, force: true });
  }
}

/** Opens the store read-only (safe while `serve` runs) for one command and closes it. */
export async function withReader<T>(where: StoreFlags | StoreSpec, fn: (store: StoreReader) => Promise<T> | T): Promise<T> {
  const store = await openStoreReader('kind' in where ? where : storeSpecFrom(where));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
