/**
 * The web checker's job table and rate limiter: checks started over HTTP run in the background and
 * are kept in memory so that `GET /api/v1/checks/ID` (and the shareable result page) can read them.
 *
 * Invariants (ARCHITECTURE.md "Bounded resources"):
 * - ids are 128 random bits (base64url): unguessable, so a result URL can be shared;
 * - at most `max` jobs are kept (least recently used dropped first) and a job is dropped
 *   `ttlMs` after it finished; each job keeps at most MAX_PROGRESS progress events;
 * - per client key (IP address or token): at most `perMinute` checks started in any 60 s window
 *   and at most `running` at once; the limiter itself keeps at most MAX_KEYS keys.
 */
import { randomBytes } from 'node:crypto';
import type { DomainReport } from '../check/domain.js';
import type { HostReport } from '../check/types.js';

/** A check that could not run at all (as `postseal check --json` prints it, exit 2). */
export interface CheckErrorReport {
  schemaVersion: 1;
  kind: 'host' | 'domain';
  status: 'error';
  error: { code: string; message: string };
}

export type CheckReport = HostReport | DomainReport | CheckErrorReport;

/** One progress event of a running check (the SSE `progress` event's data). */
export interface CheckProgress {
  /** Milliseconds since the check started. */
  t: number;
  step: string;
  detail: string;
  /** The address the step belongs to (domain checks run several hosts). */
  address?: string;
}

export interface CheckJob {
  id: string;
  kind: 'host' | 'domain';
  /** What was asked (`HOST[:PORT]` or the domain). */
  target: string;
  createdAt: number;
  status: 'running' | 'done';
  progress: CheckProgress[];
  /** Set when done: the same JSON as `postseal check --json`. */
  report: CheckReport | null;
  finishedAt: number | null;
}

export type CheckEvent = { type: 'progress'; data: CheckProgress } | { type: 'done'; data: CheckReport };

const MAX_PROGRESS = 1000;
const MAX_KEYS = 10_000;

export interface CheckJobsOptions {
  /** Jobs kept at most (default 500). */
  max?: number;
  /** How long a finished job's result is kept (default one hour). */
  ttlMs?: number;
}

export class CheckJobs {
  private readonly jobs = new Map<string, CheckJob>();
  private readonly listeners = new Map<string, Set<(e: CheckEvent) => void>>();
  private readonly max: number;
  private readonly ttlMs: number;

  constructor(o: CheckJobsOptions = {}) {
    this.max = o.max ?? 500;
    this.ttlMs = o.ttlMs ?? 3_600_000;
  }

  /**
   * Starts `run` in the background. `run` reports progress through its argument and resolves with
   * the report; a rejection becomes an error report built by `onError`.
   */
  start(kind: CheckJob['kind'], target: string, run: (progress: (p: Omit<CheckProgress, 't'>) => void) => Promise<CheckReport>, onError: (e: unknown) => CheckReport): CheckJob {
    this.sweep();
    const job: CheckJob = { id: randomBytes(16).toString('base64url'), kind, target, createdAt: Date.now(), status: 'running', progress: [], report: null, finishedAt: null };
    this.jobs.set(job.id, job);
    while (this.jobs.size > this.max) {
      const oldest = this.jobs.keys().next().value;
      if (oldest === undefined) break;
      this.drop(oldest);
    }
    const progress = (p: Omit<CheckProgress, 't'>): void => {
      if (job.status !== 'running' || job.progress.length >= MAX_PROGRESS) return;
      const ev: CheckProgress = { t: Date.now() - job.createdAt, ...p };
      job.progress.push(ev);
      this.emit(job.id, { type: 'progress', data: ev });
    };
    void run(progress).catch(onError).then((report) => {
      job.status = 'done';
      job.report = report;
      job.finishedAt = Date.now();
      this.emit(job.id, { type: 'done', data: report });
      this.listeners.delete(job.id);
    });
    return job;
  }

  /** The job, or null when unknown or expired; a read makes it the most recently used. */
  get(id: string): CheckJob | null {
    this.sweep();
    const job = this.jobs.get(id);
    if (job === undefined) return null;
    this.jobs.delete(id);
    this.jobs.set(id, job);
    return job;
  }

  /** Live events of a running job; returns the unsubscribe function. */
  subscribe(id: string, fn: (e: CheckEvent) => void): () => void {
    let set = this.listeners.get(id);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(id, set);
    }
    set.add(fn);
    return () => {
      const s = this.listeners.get(id);
      s?.delete(fn);
      if (s?.size === 0) this.listeners.delete(id);
    };
  }

  get size(): number {
    return this.jobs.size;
  }

  private emit(id: string, e: CheckEvent): void {
    for (const fn of this.listeners.get(id) ?? []) {
      try {
        fn(e);
      } catch {
        // A broken listener (a closed stream) must not stop the check.
      }
    }
  }

  private drop(id: string): void {
    // A running job's listeners (open SSE streams) stay until its `done` (start() removes them
    // then): dropped from the table, the job still finishes, and its streams must hear the end.
    if (this.jobs.get(id)?.status !== 'running') this.listeners.delete(id);
    this.jobs.delete(id);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, j] of this.jobs) if (j.finishedAt !== null && now - j.finishedAt > this.ttlMs) this.drop(id);
  }
}

export interface CheckLimits {
  /** Checks a client may start per minute (default 10). */
  perMinute?: number;
  /** Checks a client may have running at once (default 2). */
  running?: number;
}

export type LimitDecision = { ok: true; release: () => void } | { ok: false; retryAfterS: number; reason: string };

/** Per-client limits for starting checks (sliding 60 s window + concurrency). */
export class CheckLimiter {
  private readonly perMinute: number;
  private readonly maxRunning: number;
  private readonly starts = new Map<string, number[]>();
  private readonly running = new Map<string, number>();

  constructor(o: CheckLimits = {}) {
    this.perMinute = o.perMinute ?? 10;
    this.maxRunning = o.running ?? 2;
  }

  tryStart(key: string, now = Date.now()): LimitDecision {
    const recent = (this.starts.get(key) ?? []).filter((t) => now - t < 60_000);
    const run = this.running.get(key) ?? 0;
    if (run >= this.maxRunning) return { ok: false, retryAfterS: 5, reason: `at most ${this.maxRunning} checks may run at once per client` };
    const first = recent[0];
    if (recent.length >= this.perMinute && first !== undefined) {
      return { ok: false, retryAfterS: Math.max(1, Math.ceil((first + 60_000 - now) / 1000)), reason: `at most ${this.perMinute} checks per minute per client` };
    }
    if (!this.starts.has(key) && this.starts.size >= MAX_KEYS) this.prune(now);
    recent.push(now);
    this.starts.set(key, recent);
    this.running.set(key, run + 1);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        const n = (this.running.get(key) ?? 1) - 1;
        if (n <= 0) this.running.delete(key);
        else this.running.set(key, n);
      },
    };
  }

  private prune(now: number): void {
    for (const [k, ts] of this.starts) if (!this.running.has(k) && ts.every((t) => now - t >= 60_000)) this.starts.delete(k);
    // Still full (a flood of distinct clients): forget the oldest keys; the window is then lenient
    // for them, but memory stays bounded.
    for (const k of this.starts.keys()) {
      if (this.starts.size < MAX_KEYS) break;
      if (!this.running.has(k)) this.starts.delete(k);
    }
  }
}
