import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDirs } from './helpers.js';

const dirs = tempDirs();
after(() => dirs.cleanup());

const root = fileURLToPath(new URL('../..', import.meta.url));

test('compiled with tsc, the store starts its writer worker from sqlite-writer.js (no tsx)', { timeout: 120_000 }, () => {
  // Output inside the repo (gitignored .tmp/) so that better-sqlite3 resolves from node_modules.
  mkdirSync(join(root, '.tmp'), { recursive: true });
  const out = mkdtempSync(join(root, '.tmp', 'store-dist-'));
  dirs.track(out);
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '--outDir', out, '--rootDir', join(root, 'src'), '--target', 'ES2022', '--module', 'NodeNext',
    '--moduleResolution', 'NodeNext', '--strict', '--esModuleInterop', '--skipLibCheck', '--types', 'node',
    join(root, 'src', 'store', 'index.ts'), join(root, 'src', 'store', 'sqlite-writer.ts')], { cwd: root, stdio: 'pipe' });
  const entry = join(out, 'store', 'index.js');
  const stdout = execFileSync(process.execPath, [fileURLToPath(new URL('./fixtures/dist-smoke.mjs', import.meta.url)), entry, dirs.make()], {
    cwd: root,
    encoding: 'utf8',
    // A clean child: no inherited --import tsx.
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  assert.deepEqual(JSON.parse(stdout.trim()), { ok: true, mode: 'worker', count: 2 });
});
