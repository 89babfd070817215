#!/usr/bin/env node
// Runs every test/**/*.test.ts through node:test (with tsx), and fails when it finds none.
// Arguments narrow the set: `npm test -- transcripts interop/swaks` keeps files whose path
// contains one of the words.
import { cpSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}
const filters = process.argv.slice(2).filter((a) => !a.startsWith('-'));
let files = walk(join(root, 'test')).sort();
if (filters.length) files = files.filter((f) => filters.some((w) => relative(root, f).includes(w)));
if (files.length === 0) {
  console.error('run-tests: no test files found' + (filters.length ? ` matching ${filters.join(', ')}` : ''));
  process.exit(1);
}
// The CLI children of the tests (test/cli/child.ts) run a build of the current sources, made here
// into .test-dist/ (inside the repository, so node_modules resolve): node starts it in ~0.6 s
// where tsx needs ~1.5 s per child, and there are hundreds of children. Built from the sources
// now, so it can never be stale; a type error fails the run here. POSTSEAL_TEST_TSX=1: no build.
let env = process.env;
if (process.env.POSTSEAL_TEST_TSX !== '1') {
  const out = join(root, '.test-dist');
  rmSync(out, { recursive: true, force: true });
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.json'), '--outDir', out], { stdio: 'inherit', cwd: root });
  if (tsc.status !== 0) {
    console.error('run-tests: the build of src/ for the CLI tests failed (see above)');
    process.exit(tsc.status ?? 1);
  }
  cpSync(join(root, 'src/http/ui'), join(out, 'http/ui'), { recursive: true });
  env = { ...process.env, POSTSEAL_TEST_CLI: join(out, 'cli/main.js') };
}
const concurrency = process.env.POSTSEAL_TEST_CONCURRENCY ?? '2';
const args = ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files.map((f) => relative(root, f))];
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root, env });
process.exit(r.status ?? 1);
