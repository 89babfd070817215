/** Small helpers shared by the CLI commands: reading secrets, collecting repeated flags. */
import { createInterface } from 'node:readline';
import { UsageError } from '../errors.js';

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
