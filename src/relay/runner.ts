/**
 * The outbound queue runner of `postseal serve`: claims due queue rows, delivers each message to
 * each destination domain with the TLS level its policy asks for, records the outcome of every
 * attempt (TLS included), retries with backoff, and bounces permanent failures and expired mail.
 *
 * Invariants:
 * - a recipient is delivered, deferred or failed by exactly one recordAttempt per attempt, made
 *   as soon as that message's outcome is final (the client awaits it before the next message of
 *   the connection), not at the end of its batch: a node that dies mid-batch re-sends only the
 *   messages it had not recorded (at most the one in flight: at-least-once);
 * - a pass claims about what its workers can have under way (concurrency × messages per
 *   connection, at most CLAIM_MAX per round), remote rows for relay.leaseMs; while a batch or a
 *   handoff runs, the leases of its rows not yet recorded are renewed every third of the lease;
 * - jobs of one pass for the same destination (route host:port and TLS level, or MX domain and
 *   REQUIRETLS) share connections (deliverBatch): at most maxMessagesPerConnection messages each,
 *   and every message keeps its own per-recipient outcome;
 * - MX destinations go through the sending policy (policy/decide.ts: TLS table, DANE, MTA-STS,
 *   default, in that order): each MX host only if the policy allows it, at its level, checked
 *   against its name; no usable host → deferred (4.7.5), never plaintext, never bounced at once;
 * - the TLS level is never lowered: the per-destination policy, or the default, raised to
 *   `verify` for a message that carried REQUIRETLS (RFC 8689 §4.2.1: verified TLS on every hop),
 *   whose bounces say 5.7.30 when TLS was the reason (RFC 8689 §5);
 * - every attempt is counted for TLS-RPT through the injected recorder (default: none);
 * - a bounce is sent from the null sender and never for a message from the null sender;
 * - content is sent with CRLF line endings only (a relay never forwards a bare CR or LF);
 * - rows with a target (local mailboxes handed to LMTP, Maildir or a webhook, issue 12) go to
 *   that target's one DeliveryTarget instance (handoff.ts), one call per (message, target) with
 *   all its recipients and the message read once; their outcomes are recorded like SMTP ones
 *   (same backoff, bounces, DELAY and SUCCESS DSNs, the latter with Action: delivered, RFC 3464
 *   §2.3.3), and local rows are leased for longer than the attempt's deadline.
 */
import { deliverBatch, deliverBatchToDomain, tlsLevelRank, type BatchMessage, type DeliveryResult, type DomainDelivery, type Resolver, type TlsLevel, type Timeouts } from '../client/index.js';
import { signedGeneratedMessage, type GeneratedSigner } from '../store/generated.js';
import type { Logger } from '../log.js';
import { decide, type AdDns, type Decided, type PolicyContext } from '../policy/decide.js';
import { domainPlan, tlsRptEvents } from '../policy/attempt.js';
import type { MtaStsLookup, PolicySource, TlsaLookup, TlsRptRecorder } from '../policy/types.js';
import { domainOf, type QueueEntry, type Store, type StoredMessage } from '../store/index.js';
import type { TlsOutcome } from '../types.js';
import { buildBounce, type FailedRecipient } from './bounce.js';
import { dsnMailParams, dsnRcptParams } from '../protocol/dsn.js';
import { nextAttempt, type RetryPolicy } from './schedule.js';
import { enhancedOf, publicDiagnostic, type TargetRegistry } from './handoff.js';
import type { RecipientOutcome } from '../delivery/types.js';

/**
 * What the runner needs, all of it given: serve takes it from the config schema
 * (config.ts relayRunnerSettings; its defaults are DEFAULT_RELAY there), so there is one set of
 * defaults.
 */
export interface RelayConfig {
  /** Our name in EHLO and in bounces. */
  hostname: string;
  /**
   * Static routes, like Postfix transport maps: domain (or '*' for a relayhost) → host:port, and
   * the name its certificate must carry (SNI and `verify`; default: the host).
   */
  routes: Record<string, { host: string; port: number; name?: string }>;
  /** Per-destination TLS level (Postfix smtp_tls_policy_maps); others get defaultTls. */
  tlsPolicy: Record<string, TlsLevel>;
  defaultTls: TlsLevel;
  /** Port for MX deliveries (25; tests point it at their own servers). */
  smtpPort: number;
  /** Extra trusted CA (PEM) for `verify`, besides the system roots. */
  ca: string | null;
  retry: RetryPolicy;
  /** How often to look for due rows. */
  intervalMs: number;
  /** Parallel deliveries. */
  concurrency: number;
  timeouts?: Partial<Timeouts>;
  /** Local domains: bounces to them go to a mailbox, not out again. */
  localDomains: string[];
  /** Connection reuse: most messages over one connection (1 turns reuse off). */
  maxMessagesPerConnection: number;
  /** Largest original returned whole in a RET=FULL bounce; above it headers only (bounce.ts). */
  bounceSizeLimit: number;
  /**
   * How long a claimed remote row stays leased; renewed every leaseMs/3 while its delivery runs
   * (relay.leaseMs, at least 5 s in the config; tests may pass less here).
   */
  leaseMs: number;
}

/** Most rows claimed per round of a pass (per kind): a node leases no more than it can start on. */
const CLAIM_MAX = 500;

export interface RunSummary {
  claimed: number;
  delivered: number;
  deferred: number;
  failed: number;
  bounces: number;
  /** TCP connections opened for deliveries in this pass. */
  connections: number;
}

/**
 * The sending policy's lookups, injected (serve builds them from relay.dns/mtaSts/dane/tlsRpt);
 * absent: no DNSSEC, no MTA-STS, no DANE — the table and the default level only.
 */
export interface RunnerPolicy {
  /** The AD-aware DNS client (policy/dns.ts) for MX, addresses; null: the runner's Resolver. */
  dns?: AdDns | null;
  mtaSts?: ((domain: string) => Promise<MtaStsLookup>) | null;
  tlsa?: ((host: string, port: number) => Promise<TlsaLookup>) | null;
  /** TLS-RPT counting (RFC 8460): called after every attempt. */
  tlsRpt?: TlsRptRecorder | null;
  /** DKIM-signs each bounce once, before it is stored (auth/dkim-own.ts); absent: unsigned. */
  signGenerated?: GeneratedSigner | null;
  /** Local delivery targets (handoff.ts) for rows with a target; absent: those rows are not claimed. */
  targets?: TargetRegistry | null;
  /** Deliver remote rows (target null); false: only handoffs (serve with relay.enabled false). Default true. */
  remote?: boolean;
  /** Observer of attempts and bounces (metrics, issue 14); absent or null: none. */
  events?: RunnerEvents | null;
}

/** What the runner tells an observer; called synchronously, must be cheap and must not throw. */
export interface RunnerEvents {
  /**
   * One recipient's attempt as recorded: `kind` 'remote' (SMTP) or the local target's kind
   * (lmtp, maildir, webhook); for SMTP the TLS outcome and which policy set the level asked for
   * (the MX host's decision, or for a static route the TLS table or the default).
   */
  attempt(outcome: 'delivered' | 'deferred' | 'failed', kind: string, tls: TlsOutcome | null, source: PolicySource | null): void;
  /** A failure DSN (bounce) was queued. */
  bounce(): void;
}

/** The rows of one message for one delivery target: one DeliveryTarget call. */
interface LocalJob {
  id: string;
  target: string;
  mailFrom: string;
  entries: QueueEntry[];
}

/** One recipient's outcome of an attempt, SMTP or local, as record() needs it. */
interface EntryResult {
  status: 'delivered' | 'deferred' | 'failed';
  /** The queue's error text (full: the operator reads it in `queue show`). */
  reason: string;
  /** What a DSN says as Diagnostic-Code (SMTP: the reply, as `reason`). */
  diagnostic: string;
  /** The reply's enhanced status code, if any. */
  enhanced: string | null;
  /** RFC 8689 §5: 5.7.30 when missing TLS is why a REQUIRETLS message fails. */
  tlsStatus: string | null;
}

interface Job {
  id: string;
  domain: string;
  mailFrom: string;
  requireTls: boolean;
  entries: QueueEntry[];
}

/** Jobs that go over the same connection(s): same destination, same TLS level. */
interface Batch {
  /** The level for a route (MX hosts get theirs from the policy). */
  level: TlsLevel;
  route: { host: string; port: number; name?: string } | null;
  /** The MX domain (for a route: the domain of the first job, for logs). */
  domain: string;
  requireTls: boolean;
  jobs: Job[];
}

export class QueueRunner {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<RunSummary> | null = null;
  private again = false;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly cfg: RelayConfig,
    private readonly resolver: Resolver,
    private readonly logger: Logger,
    private readonly policy: RunnerPolicy = {},
  ) {}

  /** What decide() needs, from the config and the injected lookups. */
  policyContext(): PolicyContext {
    return {
      dns: this.policy.dns ?? null,
      resolver: this.resolver,
      table: this.cfg.tlsPolicy,
      defaultLevel: this.cfg.defaultTls,
      port: this.cfg.smtpPort,
      mtaSts: this.policy.mtaSts ?? null,
      tlsa: this.policy.tlsa ?? null,
    };
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  /** Run soon (new mail was queued). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) this.again = true;
    else this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      // A pass that fails (the store unreachable while claiming or recording: STORE_UNAVAILABLE)
      // is logged and the next pass comes on schedule; unhandled, the rejection ended the process.
      void this.runOnce()
        .catch((err: unknown) => {
          this.logger.error({ event: 'queue-run', error: err instanceof Error ? err.message : String(err) }, 'queue run failed; retrying at the next interval');
        })
        .finally(() => {
          if (this.stopped) return;
          const more = this.again;
          this.again = false;
          this.schedule(more ? 0 : this.cfg.intervalMs);
        });
    }, ms);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  /** One pass over the due rows. Concurrent calls share the pass in progress. */
  runOnce(now = new Date()): Promise<RunSummary> {
    this.running ??= this.pass(now).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async pass(now: Date): Promise<RunSummary> {
    const summary: RunSummary = { claimed: 0, delivered: 0, deferred: 0, failed: 0, bounces: 0, connections: 0 };
    const decisions = new Map<string, Promise<Decided>>();
    // A stopped runner claims nothing: claimed rows it would not run stay leased until expiry.
    const targets = this.policy.targets ?? null;
    let remoteMore = this.policy.remote !== false;
    let localMore = targets !== null;
    // Rows claimed per round: about what the workers can have under way at once (concurrency
    // connections of up to maxMessagesPerConnection messages each), at least one per worker — so
    // this node does not hold leases on rows it is not working on (another node could take them).
    const concurrency = Math.max(1, Math.floor(this.cfg.concurrency));
    const perRound = Math.max(concurrency, Math.min(CLAIM_MAX, concurrency * Math.max(1, Math.floor(this.cfg.maxMessagesPerConnection))));
    // Rows attempted in this pass: a row due again already (a tiny backoff) waits for the next pass.
    const seen = new Set<string>();
    while (!this.stopped && (remoteMore || localMore)) {
      // Leases run from the claim's real time (a pass may last longer than a lease); `now` may be
      // later than that in tests (rows made due ahead of time).
      const claimAt = new Date(Math.max(now.getTime(), Date.now()));
      // Remote rows leased for relay.leaseMs (renewed while delivered); local ones past their targets' deadlines.
      const rows = remoteMore ? await this.store.claimDue(claimAt, perRound, { kind: 'remote', leaseMs: this.cfg.leaseMs }) : [];
      const localLease = targets?.leaseMs() ?? 0;
      const local = localMore && targets ? await this.store.claimDue(claimAt, perRound, { kind: 'local', leaseMs: localLease }) : [];
      remoteMore = rows.length === perRound;
      localMore = local.length === perRound;
      if (rows.length + local.length === 0) break;
      for (const e of [...rows, ...local]) {
        const k = rowKey(e);
        if (seen.has(k)) remoteMore = localMore = false;
        seen.add(k);
      }
      summary.claimed += rows.length + local.length;
      // Every row claimed in this round keeps its lease until it is recorded — also the rows whose
      // task has not started yet (a round holds more rows than the workers run at once: with slow
      // hosts a task may start after a whole lease, and an expired lease lets another node deliver
      // the same row beside us). Each task removes its rows as they are recorded.
      const remoteWorking = new Map(rows.map((e) => [rowKey(e), e] as const));
      const localWorking = new Map(local.map((e) => [rowKey(e), e] as const));
      const tasks: Array<() => Promise<void>> = [
        ...groupLocal(local).map((job) => () => this.runLocal(job, localLease, now, summary, localWorking)),
        ...this.batches(groupJobs(rows)).map((batch) => () => this.deliverBatchOf(batch, now, summary, decisions, remoteWorking)),
      ];
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < tasks.length && !this.stopped) {
          const task = tasks[next++];
          if (task) await task();
        }
      };
      const workers = (): Promise<PromiseSettledResult<void>[]> => Promise.allSettled(Array.from({ length: Math.max(1, Math.min(this.cfg.concurrency, tasks.length)) }, worker));
      // allSettled: one task failing (the store unreachable while recording) does not end the pass
      // while the other workers still deliver; the first failure is thrown once all have stopped.
      const settled = await this.whileLeased(remoteWorking, this.cfg.leaseMs, () => (local.length > 0 ? this.whileLeased(localWorking, localLease, workers) : workers()));
      const failure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure) throw failure.reason;
    }
    return summary;
  }

  levelFor(domain: string, requireTls: boolean): TlsLevel {
    const policy = this.cfg.tlsPolicy[domain] ?? this.cfg.defaultTls;
    // RFC 8689 §4.2.1: a REQUIRETLS message goes only over verified TLS (PKIX or DANE).
    return requireTls && tlsLevelRank(policy) < tlsLevelRank('verify') ? 'verify' : policy;
  }

  /**
   * Jobs grouped by destination and level, in chunks of at most maxMessagesPerConnection: one
   * chunk is one deliverBatch (one connection unless the server drops it), and chunks for the
   * same destination may run in parallel up to `concurrency`.
   */
  private batches(jobs: Job[]): Batch[] {
    const max = Math.max(1, Math.floor(this.cfg.maxMessagesPerConnection));
    const groups = new Map<string, Batch>();
    for (const job of jobs) {
      const level = this.levelFor(job.domain, job.requireTls);
      const route = this.cfg.routes[job.domain] ?? this.cfg.routes['*'] ?? null;
      // MX: one policy decision per domain and REQUIRETLS; the level is then per MX host.
      const key = route ? `route ${route.host} ${route.port} ${route.name ?? ''} ${level}` : `mx ${job.domain} ${job.requireTls}`;
      let g = groups.get(key);
      if (!g) {
        g = { level, route, domain: job.domain, requireTls: job.requireTls, jobs: [] };
        groups.set(key, g);
      }
      g.jobs.push(job);
    }
    const out: Batch[] = [];
    for (const g of groups.values()) {
      for (let i = 0; i < g.jobs.length; i += max) out.push({ ...g, jobs: g.jobs.slice(i, i + max) });
    }
    return out;
  }

  private async deliverBatchOf(batch: Batch, now: Date, summary: RunSummary, decisions: Map<string, Promise<Decided>>, working: Map<string, QueueEntry>): Promise<void> {
    const items: Array<{ job: Job; stored: StoredMessage }> = [];
    for (const job of batch.jobs) {
      const stored = await this.store.getMessage(job.id);
      if (stored) items.push({ job, stored });
      else {
        for (const e of job.entries) working.delete(rowKey(e));
        await this.store.deleteQueued(job.id);
      }
    }
    if (items.length === 0) return;
    let level = batch.level;
    const base = {
      level,
      helo: this.cfg.hostname,
      bareLineEndings: 'normalize' as const,
      maxPerConnection: this.cfg.maxMessagesPerConnection,
      ...(this.cfg.ca ? { tls: { ca: this.cfg.ca } } : {}),
      ...(this.cfg.timeouts ? { timeouts: this.cfg.timeouts } : {}),
    };
    const messages: BatchMessage[] = items.map(({ job, stored }) => ({
      from: job.mailFrom,
      to: job.entries.map((e) => e.recipient),
      message: stored.data,
      requireTls: job.requireTls,
      ...dsnOf(job),
    }));
    // Which policy set the level (metrics): per MX host from the decision; a route: table or default.
    let sourceOf: (final: DeliveryResult | null) => PolicySource = () => (this.cfg.tlsPolicy[batch.domain] !== undefined ? 'table' : 'default');
    // Each message recorded as soon as its outcome is final, before the next one is sent (the
    // client awaits this): a node that dies mid-batch re-sends only what it had not recorded.
    const recordItem = async (k: number, final: DeliveryResult | null, dnsReason: { message: string; permanent: boolean } | null): Promise<void> => {
      const item = items[k];
      if (!item) return;
      // Recorded rows are no longer renewed (recordAttempt clears their lease).
      for (const e of item.job.entries) working.delete(rowKey(e));
      await this.record(item.job, item.stored, final?.level ?? level, final, dnsReason, now, summary, sourceOf(final));
    };
    if (batch.route) {
      // A route names the certificate name to verify (`HOST:PORT@NAME`); else its host.
      const b = await deliverBatch(
        { ...base, host: batch.route.host, port: batch.route.port, serverName: batch.route.name ?? batch.route.host, onResult: (k, final) => recordItem(k, final, null) },
        messages,
      );
      summary.connections += b.connections;
    } else {
      // One decision per (domain, REQUIRETLS) per pass, shared by its chunks: the lookups (MX,
      // TLSA, the MTA-STS TXT and, on first contact, the policy fetch) are made once, not per chunk.
      const key = `${batch.domain} ${batch.requireTls ? 1 : 0}`;
      let pending = decisions.get(key);
      if (pending === undefined) decisions.set(key, (pending = decide(batch.domain, this.policyContext(), { requireTls: batch.requireTls })));
      const decided = await pending;
      const decision = decided.decision;
      sourceOf = (final) => (final === null ? decision.source : (decision.mx.find((m) => m.host === final.serverName || m.host === final.host)?.source ?? decision.source));
      // The level recorded when no host was tried: the first host's (or the default).
      level = decided.decision.mx.find((m) => m.allowed)?.level ?? decided.decision.mx[0]?.level ?? level;
      // deliverBatchToDomain calls onResult once a message's outcome is final across the MX walk
      // (not on a temporary failure at a host when another host is still to be tried).
      const onResult = (k: number, x: DomainDelivery): Promise<void> => recordItem(k, x.final, x.final ? null : { message: x.reason ?? 'no MX host could be tried', permanent: x.permanent });
      const d = await deliverBatchToDomain(batch.domain, { ...base, port: this.cfg.smtpPort, onResult }, messages, this.resolver, domainPlan(decided));
      summary.connections += d.connections;
      // TLS-RPT (RFC 8460) counts every attempt at every host, from the whole walk's results.
      this.countTlsRpt(decided, d.deliveries.flatMap((x) => x.attempts));
    }
  }

  /**
   * Runs `work` while renewing, every leaseMs/3, the leases of the rows in `working` (the caller
   * removes a row once it is recorded). A renewal that extends fewer rows than asked means a lease
   * ran out (a stalled process or store) and another node may have claimed the row: logged, and
   * the delivery goes on — the message may then be delivered twice (at-least-once; README
   * "several nodes"). The timer ends with `work`, also when it throws.
   */
  private async whileLeased<T>(working: Map<string, QueueEntry>, leaseMs: number, work: () => Promise<T>): Promise<T> {
    let inFlight: Promise<void> | null = null;
    const renew = async (): Promise<void> => {
      const rows = [...working.values()];
      if (rows.length === 0) return;
      try {
        const renewed = await this.store.renewLeases(rows, leaseMs);
        // Rows recorded while the renewal ran lost their lease to recordAttempt, not to another node.
        const still = rows.filter((e) => working.has(rowKey(e)));
        const lost = still.length - renewed;
        if (lost > 0) {
          // At-least-once: we keep delivering; the other node may deliver the same message too.
          this.logger.warn({ event: 'lease-lost', lost, ids: [...new Set(still.map((e) => e.id))], recipients: still.map((e) => e.recipient) }, 'queue lease lost while delivering: another node may deliver these too');
        }
      } catch (err) {
        this.logger.warn({ event: 'lease-renew', error: err instanceof Error ? err.message : String(err) }, 'queue lease renewal failed');
      }
    };
    const timer = setInterval(() => {
      // One renewal at a time: a slow store is not asked again before it answered.
      inFlight ??= renew().finally(() => (inFlight = null));
    }, Math.max(1, Math.floor(leaseMs / 3)));
    timer.unref();
    try {
      return await work();
    } finally {
      clearInterval(timer);
      await inFlight;
    }
  }

  /**
   * One local handoff: the message read once, one call to the target's instance for all the
   * job's recipients, under a deadline shorter than the rows' lease; each outcome recorded. The
   * rows are leased past the target's deadline at the claim, and renewed (by the round) until recorded.
   */
  private async runLocal(job: LocalJob, leaseMs: number, now: Date, summary: RunSummary, working: Map<string, QueueEntry>): Promise<void> {
    const stored = await this.store.getMessage(job.id);
    if (!stored) {
      for (const e of job.entries) working.delete(rowKey(e));
      for (const e of job.entries) await this.store.deleteQueued(job.id, e.recipient);
      return;
    }
    const resolved = this.policy.targets?.get(job.target) ?? { ok: false as const, kind: 'unknown', problem: 'no delivery targets configured' };
    let outcomes: RecipientOutcome[];
    if (!resolved.ok) {
      // A target we cannot build now (a webhook without its secret) may be configured later: retried.
      outcomes = job.entries.map((e) => ({ recipient: e.recipient, outcome: resolved.kind === 'unknown' ? 'failed' : 'deferred', error: resolved.problem }));
    } else {
      const ac = new AbortController();
      const ms = this.policy.targets?.deadlineMs(resolved, leaseMs) ?? 1;
      const timer = setTimeout(() => ac.abort(), ms);
      try {
        outcomes = await resolved.target.deliver({ id: job.id, mailFrom: job.mailFrom, recipients: job.entries.map((e) => e.recipient), data: stored.data, summary: stored.summary }, ac.signal);
      } catch (err) {
        // DeliveryTarget.deliver never rejects; should one, every recipient is retried.
        outcomes = job.entries.map((e) => ({ recipient: e.recipient, outcome: 'deferred', error: `${job.target}: ${err instanceof Error ? err.message : String(err)}` }));
      } finally {
        clearTimeout(timer);
      }
      if (ac.signal.aborted) outcomes = outcomes.map((o) => (o.outcome === 'delivered' ? o : { ...o, error: `${o.error} (attempt deadline ${ms} ms)` }));
    }
    const kind = resolved.kind;
    const results = new Map<string, EntryResult>();
    for (const o of outcomes) {
      const error = o.outcome === 'delivered' ? null : o.error;
      results.set(o.recipient, { status: o.outcome, reason: error ?? `delivered to ${kind}`, diagnostic: publicDiagnostic(kind, o.outcome, error), enhanced: error === null ? null : enhancedOf(error), tlsStatus: null });
    }
    for (const e of job.entries) working.delete(rowKey(e));
    const missing: EntryResult = { status: 'deferred', reason: `${job.target}: no outcome for this recipient`, diagnostic: publicDiagnostic(kind, 'deferred', null), enhanced: null, tlsStatus: null };
    await this.recordEach(job, stored, null, (e) => results.get(e.recipient) ?? missing, { action: 'delivered', remoteMta: null, dsnPassed: false }, { target: job.target }, now, summary, { kind, source: null });
  }

  /** RFC 8460: every attempt (and every host the policy refused) counted for TLS-RPT. */
  private countTlsRpt(decided: Decided, attempts: DeliveryResult[]): void {
    const recorder = this.policy.tlsRpt;
    if (!recorder || decided.mx.kind !== 'hosts') return;
    for (const e of tlsRptEvents(decided.decision, decided.input.mtaSts?.failure ?? null, attempts, Date.now())) {
      try {
        recorder.record(e);
      } catch (err) {
        this.logger.warn({ event: 'tlsrpt', error: err instanceof Error ? err.message : String(err) }, 'TLS-RPT recorder failed');
      }
    }
  }

  /** Records one job's attempt: each recipient delivered, deferred (with the next attempt) or failed (bounced). */
  private async record(job: Job, stored: StoredMessage, level: TlsLevel, final: DeliveryResult | null, dnsReason: { message: string; permanent: boolean } | null, now: Date, summary: RunSummary, source: PolicySource | null = null): Promise<void> {
    const tls = outcomeOf(level, final, dnsReason?.message ?? null);
    const tlsStatus = requireTlsStatus(job, final, dnsReason?.message ?? null);
    const resultOf = (entry: QueueEntry): EntryResult => {
      const r = final?.recipients.find((x) => x.address === entry.recipient);
      const status = r?.status ?? (final?.error?.permanent || dnsReason?.permanent ? 'failed' : 'deferred');
      const reason = r?.reply ? replyLine(r.reply) : r?.reason ?? final?.error?.message ?? dnsReason?.message ?? 'not attempted';
      return { status, reason, diagnostic: reason, enhanced: r?.reply?.enhanced ?? null, tlsStatus };
    };
    // RFC 3461 §4.1: NOTIFY=SUCCESS. Passed on to a DSN server, the report is the next hop's;
    // otherwise it is ours and says 'relayed' (RFC 3464 §2.3.3).
    await this.recordEach(job, stored, tls, resultOf, { action: 'relayed', remoteMta: final?.serverName ?? null, dsnPassed: final?.dsnPassed === true }, { domain: job.domain, host: final?.host ?? null }, now, summary, { kind: 'remote', source });
  }

  /**
   * Records one attempt of a job (SMTP or a local handoff): each recipient delivered, deferred
   * (with the next attempt) or failed (bounced), and the DSNs they asked for.
   */
  private async recordEach(
    job: { id: string; mailFrom: string; entries: QueueEntry[] },
    stored: StoredMessage,
    tls: TlsOutcome | null,
    resultOf: (entry: QueueEntry) => EntryResult,
    dsn: { action: 'relayed' | 'delivered'; remoteMta: string | null; dsnPassed: boolean },
    logFields: Record<string, unknown>,
    now: Date,
    summary: RunSummary,
    observed: { kind: string; source: PolicySource | null } = { kind: 'remote', source: null },
  ): Promise<void> {
    const events = this.policy.events ?? null;
    const failed: FailedRecipient[] = [];
    const delayed: FailedRecipient[] = [];
    const succeeded: FailedRecipient[] = [];
    const counts = { delivered: 0, deferred: 0 };
    const remoteMta = dsn.remoteMta;
    // One jitter draw per job: recipients deferred together stay due together, so the next pass
    // claims them as one job again (per-row draws split a webhook or LMTP handoff into two
    // deliveries of the same message, one per recipient row).
    const jitter = Math.random();
    for (const entry of job.entries) {
      const notify = entry.dsn.notify;
      const orcpt = entry.dsn.orcpt;
      const { status, reason, diagnostic, enhanced, tlsStatus } = resultOf(entry);
      if (status === 'delivered') {
        // false: another node had already finished this row (its lease ran out under us): its
        // outcome stands and its reports were made; this one goes into the history only.
        const decided = await this.store.recordAttempt({ id: job.id, recipient: entry.recipient, outcome: 'delivered', tls });
        events?.attempt('delivered', observed.kind, tls, observed.source);
        summary.delivered++;
        counts.delivered++;
        // RFC 3461 §4.1: NOTIFY=SUCCESS ('relayed' for SMTP, 'delivered' for a final local handoff).
        if (decided && notify?.includes('SUCCESS') && !dsn.dsnPassed) succeeded.push({ recipient: entry.recipient, orcpt, status: enhanced ?? '2.0.0', action: dsn.action, remoteMta, diagnostic, lastAttempt: now });
        continue;
      }
      if (status === 'deferred') {
        const at = nextAttempt(this.cfg.retry, entry.attempts + 1, new Date(stored.summary.receivedAt), now, jitter);
        if (at) {
          const decided = await this.store.recordAttempt({ id: job.id, recipient: entry.recipient, outcome: 'deferred', error: reason, nextAttemptAt: at, tls });
          events?.attempt('deferred', observed.kind, tls, observed.source);
          summary.deferred++;
          counts.deferred++;
          // RFC 3461 §4.1 NOTIFY=DELAY: one warning, after the first deferral (attempts counts
          // the attempts before this one, so 0 happens once per recipient).
          if (decided && notify?.includes('DELAY') && entry.attempts === 0) delayed.push({ recipient: entry.recipient, orcpt, status: enhanced ?? '4.0.0', action: 'delayed', remoteMta, diagnostic, lastAttempt: now });
          continue;
        }
        failed.push({ recipient: entry.recipient, orcpt, status: tlsStatus ?? '4.4.7', action: 'failed', remoteMta, diagnostic: `message expired in the queue; last error: ${diagnostic}`, lastAttempt: now });
      } else {
        failed.push({ recipient: entry.recipient, orcpt, status: tlsStatus ?? enhanced ?? '5.0.0', action: 'failed', remoteMta, diagnostic, lastAttempt: now });
      }
      // A row another attempt already finished (delivered elsewhere) gets no bounce from us.
      if (!(await this.store.recordAttempt({ id: job.id, recipient: entry.recipient, outcome: 'failed', error: reason, tls }))) failed.pop();
      events?.attempt('failed', observed.kind, tls, observed.source);
      summary.failed++;
    }
    this.logger.info({ event: 'delivery', id: job.id, ...logFields, tls, ...counts, failed: failed.length }, 'delivery attempt');
    const arrival = new Date(stored.summary.receivedAt);
    // RFC 3461 §4.1: a failure DSN unless NOTIFY was given without FAILURE (NEVER included).
    const bounced = failed.filter((f) => {
      const n = job.entries.find((e) => e.recipient === f.recipient)?.dsn.notify ?? null;
      return n === null || n.includes('FAILURE');
    });
    for (const list of [bounced, delayed, succeeded]) {
      if (list.length > 0 && (await this.bounce(job, stored.data, arrival, list))) {
        summary.bounces++;
        if (list === bounced) events?.bounce();
      }
    }
  }

  private async bounce(job: { id: string; mailFrom: string; entries: QueueEntry[] }, original: Buffer, arrival: Date, failed: FailedRecipient[]): Promise<boolean> {
    const dsn = job.entries[0]?.dsn;
    const b = buildBounce({ reportingMta: this.cfg.hostname, originalSender: job.mailFrom, originalId: job.id, arrivalDate: arrival, original, recipients: failed, envId: dsn?.envId ?? null, ret: dsn?.ret ?? null, sizeLimit: this.cfg.bounceSizeLimit });
    if (!b) return false;
    const local = this.cfg.localDomains.includes(domainOf(b.to));
    await this.store.accept(await signedGeneratedMessage({ origin: 'bounce', from: '', to: b.to, local, data: b.data, hostname: this.cfg.hostname }, this.policy.signGenerated));
    if (!local) this.kick();
    return true;
  }
}

/** RFC 3461 parameters of a job to pass on (only to a server that offers DSN); none when none given. */
function dsnOf(job: Job): { dsn?: NonNullable<BatchMessage['dsn']> } {
  const first = job.entries[0]?.dsn;
  const mailParams = first ? dsnMailParams(first.envId, first.ret) : [];
  const rcptParams: Record<string, string[]> = {};
  for (const e of job.entries) {
    const p = dsnRcptParams(e.dsn.notify, e.dsn.orcpt);
    if (p.length > 0) rcptParams[e.recipient] = p;
  }
  return mailParams.length === 0 && Object.keys(rcptParams).length === 0 ? {} : { dsn: { mailParams, rcptParams } };
}

const TLS_ERRORS: ReadonlySet<string> = new Set(['REQUIRETLS_NOT_SUPPORTED', 'TLS_REQUIRED_NOT_OFFERED', 'STARTTLS_REFUSED', 'TLS_HANDSHAKE_FAILED', 'TLS_VERIFY_FAILED', 'TLS_DANE_FAILED']);

/**
 * RFC 8689 §5: a REQUIRETLS message not delivered for want of TLS (no REQUIRETLS offered, no
 * verified TLS, or no host the policy allows) bounces with 5.7.30; null when TLS was not why.
 */
function requireTlsStatus(job: Job, final: DeliveryResult | null, dnsReason: string | null): string | null {
  if (!job.requireTls) return null;
  if (final === null) return dnsReason?.startsWith('4.7.5 ') === true ? '5.7.30' : null;
  if (final.error === null) return null;
  return TLS_ERRORS.has(final.error.code) ? '5.7.30' : null;
}

function replyLine(r: { code: number; enhanced: string | null; lines: string[] }): string {
  return `${r.code}${r.enhanced ? ' ' + r.enhanced : ''} ${r.lines.join(' ')}`.trim();
}

/** One queue row: message id and recipient. */
function rowKey(e: { id: string; recipient: string }): string {
  return `${e.id}\u0000${e.recipient}`;
}

function groupJobs(rows: QueueEntry[]): Job[] {
  const jobs = new Map<string, Job>();
  for (const e of rows) {
    const key = `${e.id}\u0000${e.domain}`;
    let j = jobs.get(key);
    if (!j) {
      j = { id: e.id, domain: e.domain, mailFrom: e.mailFrom, requireTls: e.requireTls, entries: [] };
      jobs.set(key, j);
    }
    j.entries.push(e);
  }
  return [...jobs.values()];
}

/** Local rows grouped per (message, target): one DeliveryTarget call each. */
function groupLocal(rows: QueueEntry[]): LocalJob[] {
  const jobs = new Map<string, LocalJob>();
  for (const e of rows) {
    if (e.target === null) continue;
    const key = `${e.id}\u0000${e.target}`;
    let j = jobs.get(key);
    if (!j) {
      j = { id: e.id, target: e.target, mailFrom: e.mailFrom, entries: [] };
      jobs.set(key, j);
    }
    j.entries.push(e);
  }
  return [...jobs.values()];
}

/** What TLS this attempt asked for and got (recorded for every attempt). */
export function outcomeOf(level: TlsLevel, r: DeliveryResult | null, dnsReason: string | null): TlsOutcome {
  if (!r) return { host: null, levelAsked: level, levelReached: 'none', protocol: null, cipher: null, verified: false, whyNot: dnsReason };
  let whyNot: string | null = null;
  if (!r.tls) {
    const f = r.findings.find((x) => x.kind === 'starttls-not-offered' || x.kind === 'starttls-refused' || x.kind === 'handshake-failed-plaintext-retry');
    whyNot = f ? f.kind : level === 'none' ? 'policy none' : r.error?.message ?? null;
  } else if (!r.tls.verified) {
    whyNot = r.tls.verifyError;
  }
  return { host: r.tls?.checkedName ?? r.serverName ?? r.host, levelAsked: level, levelReached: r.reached, protocol: r.tls?.protocol ?? null, cipher: r.tls?.cipher ?? null, verified: r.tls?.verified ?? false, whyNot };
}
