/**
 * Summarizes V8 .cpuprofile files (node --cpu-prof): top functions by self time, and self time
 * per source file, with dist/ paths mapped back to src/. Usage:
 *   node --import tsx bench/profile-summary.ts FILE.cpuprofile [--top 30] [--skip-ms 2500]
 * --skip-ms drops the first milliseconds of the profile (process start-up, module loading, the
 * warm-up sessions), so the summary shows the steady state.
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

function short(url: string): string {
  if (!url) return '(native)';
  const u = url.replace(/^file:\/\//, '');
  const i = u.indexOf('/dist/');
  if (i >= 0) return 'src/' + u.slice(i + 6).replace(/\.js$/, '.ts');
  const n = u.lastIndexOf('node_modules/');
  if (n >= 0) return u.slice(n);
  return u.replace(/^.*\/work\/main\//, '');
}

export function summarize(file: string, top = 30, skipMs = 2500): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    if (t - p.startTime < skipMs * 1000) continue;
    const id = p.samples[i] as number;
    const dt = (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000; // ms attributed to this sample
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const fnSelf = new Map<string, number>();
  const fileSelf = new Map<string, number>();
  let idle = 0;
  for (const [id, ms] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const cf = n.callFrame;
    if (cf.functionName === '(idle)') idle += ms;
    const key = `${cf.functionName || '(anonymous)'} ${short(cf.url)}${cf.url ? ':' + (cf.lineNumber + 1) : ''}`;
    fnSelf.set(key, (fnSelf.get(key) ?? 0) + ms);
    const f = cf.url ? short(cf.url) : cf.functionName.startsWith('(') ? cf.functionName : '(native)';
    fileSelf.set(f, (fileSelf.get(f) ?? 0) + ms);
  }
  const busy = total - idle;
  const pct = (ms: number): string => ((ms / busy) * 100).toFixed(1).padStart(5) + ' %';
  const out: string[] = [];
  out.push(`${file}: ${(total / 1000).toFixed(1)} s sampled, ${(busy / 1000).toFixed(2)} s busy (percentages are of busy time)`);
  out.push('', 'top self time by function:');
  for (const [k, ms] of [...fnSelf].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, top)) out.push(`${pct(ms)}  ${ms.toFixed(0).padStart(6)} ms  ${k}`);
  out.push('', 'self time by file:');
  for (const [k, ms] of [...fileSelf].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, 20)) out.push(`${pct(ms)}  ${ms.toFixed(0).padStart(6)} ms  ${k}`);
  return out.join('\n');
}

const args = process.argv.slice(2);
const ti = args.indexOf('--top');
const top = ti >= 0 ? Number(args[ti + 1]) : 30;
const si = args.indexOf('--skip-ms');
const skip = si >= 0 ? Number(args[si + 1]) : 2500;
for (const f of args.filter((a) => a.endsWith('.cpuprofile'))) process.stdout.write(summarize(f, top, skip) + '\n\n');
