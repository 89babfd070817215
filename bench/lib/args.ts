/** Command-line flags of the bench scripts: `--name VALUE`. */

/** The value after `name` in process.argv, or `dflt` when the flag is absent. */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return (i >= 0 ? process.argv[i + 1] : undefined) ?? dflt;
}
