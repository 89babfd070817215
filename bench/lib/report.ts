/** Tables for the terminal and the README: one per scenario, then postseal/peer ratios. */

export interface RunResult {
  scenario: string;
  peer: string;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  notes?: string[];
  wallMs?: number;
  messages?: number;
  sessions?: number;
  handshakes?: number;
  errors?: number;
  errorSamples?: Record<string, number>;
  msgsPerSec?: number;
  mibPerSec?: number;
  handshakesPerSec?: number;
  latencyMs?: { p50: number; p99: number };
  sessionMs?: { p50: number; p99: number };
  serverCpuMs?: number;
  serverCpuPct?: number;
  /** handshake: per session; throughput: per message; bulk: per MiB. */
  serverCpuMsPerUnit?: number;
  unit?: 'session' | 'message' | 'MiB' | 'connection';
  serverProcesses?: number;
  loadgenCpuPct?: number;
  generatorBound?: boolean;
  otherLoadPct?: number;
  stealPct?: number;
  /** Peers with a database server (postseal-postgres): its CPU (included in serverCpuMs) and counters. */
  dbCpuMs?: number;
  dbCpuMsPerUnit?: number;
  nodeCpuMsPerUnit?: number;
  /** Write transactions committed in the window (transaction ids taken: one per group commit, plus the queue's writes). */
  dbCommits?: number;
  /** WAL bytes per message (pg_current_wal_lsn delta; PostgreSQL compresses a compressible body). */
  dbWalBytesPerMsg?: number;
  idle?: { open: number; rssKbPerConn: number; pssKbPerConn: number; rssBeforeKb: number; rssAfterKb: number; pssBeforeKb: number; pssAfterKb: number; openMs: number; serverCpuMsPerHandshake: number };
}

const oneLine = (s: string | undefined): string => (s ?? '').replace(/\s+/g, ' ').replace(/\|/g, '/').slice(0, 160);
const f = (v: number | undefined | null, d = 1): string => (v === undefined || v === null || !Number.isFinite(v) ? '–' : v >= 1000 ? Math.round(v).toLocaleString('en-US') : v.toFixed(d));

export function scenarioTable(scenario: string, rows: RunResult[]): string {
  const out: string[] = [];
  if (scenario === 'idle') {
    out.push('| peer | open conns | RSS KB/conn | PSS KB/conn | server RSS before → after (MB) | server CPU ms/handshake | errors |');
    out.push('|---|---:|---:|---:|---|---:|---:|');
    for (const r of rows) {
      if (r.status !== 'ok' || !r.idle) {
        out.push(`| ${r.peer} | ${r.status}: ${oneLine(r.reason)} |||||| `);
        continue;
      }
      const i = r.idle;
      out.push(`| ${r.peer} | ${i.open} | ${f(i.rssKbPerConn)} | ${f(i.pssKbPerConn)} | ${f(i.rssBeforeKb / 1024)} → ${f(i.rssAfterKb / 1024)} | ${f(i.serverCpuMsPerHandshake, 2)} | ${r.errors ?? 0} |`);
    }
    return out.join('\n');
  }
  out.push(`| peer | msgs/s | MiB/s | handshakes/s | p50 ms | p99 ms | server CPU % | server CPU ms/${rows.find((r) => r.unit)?.unit ?? 'unit'} | loadgen CPU % | other load % | errors |`);
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    if (r.status !== 'ok') {
      out.push(`| ${r.peer} | ${r.status}: ${oneLine(r.reason)} |||||||||| `);
      continue;
    }
    out.push(
      `| ${r.peer} | ${f(r.msgsPerSec)} | ${f(r.mibPerSec)} | ${f(r.handshakesPerSec)} | ${f(r.latencyMs?.p50, 2)} | ${f(r.latencyMs?.p99, 2)} | ${f(r.serverCpuPct)} | ${f(r.serverCpuMsPerUnit, 3)} | ${f(r.loadgenCpuPct)}${r.generatorBound ? ' ⚠' : ''} | ${f(r.otherLoadPct, 0)} | ${r.errors ?? 0} |`,
    );
  }
  const withDb = rows.filter((r) => r.status === 'ok' && r.dbCpuMsPerUnit !== undefined);
  if (withDb.length) {
    const unit = withDb[0]?.unit ?? 'unit';
    out.push('');
    out.push(`| peer (with a database server) | node CPU ms/${unit} | PostgreSQL CPU ms/${unit} | write transactions | messages per transaction | WAL bytes/msg |`);
    out.push('|---|---:|---:|---:|---:|---:|');
    for (const r of withDb) {
      const perTx = r.dbCommits && r.messages ? r.messages / r.dbCommits : NaN;
      out.push(`| ${r.peer} | ${f(r.nodeCpuMsPerUnit, 3)} | ${f(r.dbCpuMsPerUnit, 3)} | ${r.dbCommits ?? '–'} | ${f(perTx, 1)} | ${f(r.dbWalBytesPerMsg, 0)} |`);
    }
  }
  return out.join('\n');
}

export interface Ratio {
  scenario: string;
  postseal: string;
  peer: string;
  /** postseal msgs/s ÷ peer msgs/s (>1: postseal faster). idle: null. */
  rate: number | null;
  /** postseal CPU per unit ÷ peer's (<1: postseal cheaper); idle: memory per connection (PSS). */
  cost: number | null;
}

export function ratios(results: RunResult[]): Ratio[] {
  const out: Ratio[] = [];
  const scenarios = [...new Set(results.map((r) => r.scenario))];
  for (const sc of scenarios) {
    const rows = results.filter((r) => r.scenario === sc && r.status === 'ok');
    for (const p of rows.filter((r) => r.peer.startsWith('postseal'))) {
      for (const q of rows.filter((r) => !r.peer.startsWith('postseal'))) {
        if (sc === 'idle') {
          out.push({ scenario: sc, postseal: p.peer, peer: q.peer, rate: null, cost: p.idle && q.idle ? p.idle.pssKbPerConn / q.idle.pssKbPerConn : null });
        } else {
          out.push({
            scenario: sc,
            postseal: p.peer,
            peer: q.peer,
            rate: p.msgsPerSec && q.msgsPerSec ? p.msgsPerSec / q.msgsPerSec : null,
            cost: p.serverCpuMsPerUnit && q.serverCpuMsPerUnit ? p.serverCpuMsPerUnit / q.serverCpuMsPerUnit : null,
          });
        }
      }
    }
  }
  return out;
}

export function ratioTable(rs: Ratio[]): string {
  if (!rs.length) return '(no postseal/peer pair measured)';
  const out = ['| scenario | postseal | vs peer | msgs/s ratio (>1 = postseal faster) | server cost ratio (<1 = postseal cheaper; idle: PSS/conn) |', '|---|---|---|---:|---:|'];
  for (const r of rs) out.push(`| ${r.scenario} | ${r.postseal} | ${r.peer} | ${r.rate === null ? '–' : r.rate.toFixed(2) + '×'} | ${r.cost === null ? '–' : r.cost.toFixed(2) + '×'} |`);
  return out.join('\n');
}
