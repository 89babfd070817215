/**
 * `--http off` for a postseal build that has the web console (issue 14), nothing for an older
 * one: since the console, `serve` binds 127.0.0.1:8025 by default, and two bench servers (or a
 * developer's own serve) would collide on it — a collision stops serve at start.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** `dist`: the build's dist/ (its config/schema.js names the flags it knows). */
export function httpOffArgs(dist: string): string[] {
  const schema = join(dist, 'config/schema.js');
  return existsSync(schema) && readFileSync(schema, 'utf8').includes("'--http'") ? ['--http', 'off'] : [];
}
