/**
 * The Store interface: everything the server, the queue runner and the CLI need from durable
 * storage. Two implementations: the embedded SQLite store (sqlite-store.ts, the default, reads
 * synchronous) and the PostgreSQL store shared by several nodes (pg/, reads asynchronous).
 *
 * Reads off the SMTP hot path return Awaitable<T>: callers `await` them, whichever backend. The
 * address reads (hasUser, senderPatterns, aliasTargets, resolveRecipient) stay synchronous in
 * every backend — they run at every RCPT and AUTH; PostgreSQL serves them from an in-memory
 * replica of the users and aliases tables that LISTEN/NOTIFY keeps current.
 *
 * Invariants every implementation keeps (ARCHITECTURE.md "Durability contract"):
 * - accept() resolves only after the message, its envelope, its mailbox entries and its queue
 *   rows are durably committed (fsync'd) in ONE transaction; a crash never exposes half of it.
 * - Every write (accept, users, queue) goes through one writer, in submission order.
 * - Addresses are compared after normalizeAddress() (lower-cased).
 * - Timestamps crossing this interface are ISO-8601 strings in UTC.
 */
import type { BodySpool } from './spool.js';
import type { Notify } from '../protocol/dsn.js';
import type { TlsRptCount, TlsRptStoredReport, TlsRptStoreReads, TlsRptStoreWrites } from './tlsrpt.js';
import type { AliasEntry } from './aliases.js';
import type { ApiTokenInfo } from './tokens.js';
import type { RecipientResolution, ResolveOptions } from './resolve.js';

export type { AliasEntry } from './aliases.js';
export type { RecipientResolution, ResolveOptions } from './resolve.js';
import type { IncomingMessage, MessageSummary, TlsOutcome } from '../types.js';

/** A value, or a promise of it: what a read returns when one backend answers at once and another over the network. */
export type Awaitable<T> = T | Promise<T>;

export const QUEUE_STATUSES = ['queued', 'deferred', 'delivered', 'failed'] as const;
export type QueueStatus = (typeof QUEUE_STATUSES)[number];

/**
 * One (message, recipient) pair of the queue: a remote recipient (target null: SMTP to its
 * domain's MX or route), or a local mailbox handed to a delivery target (target set).
 */
export interface QueueEntry {
  /** Message id; also the queue id shown in logs. */
  id: string;
  mailFrom: string;
  recipient: string;
  /** Lower-cased domain of the recipient: the unit MX resolution works on. */
  domain: string;
  /**
   * null: remote delivery over SMTP (today's rows). Otherwise the delivery target spec text
   * (delivery/target-spec.ts, e.g. `lmtp:127.0.0.1:24`) this local mailbox is handed to; the
   * store keeps it as given and does not interpret it.
   */
  target: string | null;
  status: QueueStatus;
  attempts: number;
  nextAttemptAt: string;
  lastError: string | null;
  /** TLS facts of the last attempt's connection, when it had one. */
  lastTls: TlsOutcome | null;
  /** Set while a runner holds the row (claimDue); an expired lease makes it claimable again. */
  claimedUntil: string | null;
  /** RFC 8689 REQUIRETLS was given on MAIL for this message. */
  requireTls: boolean;
  /** RFC 3461: ENVID/RET of the message, NOTIFY/ORCPT of this recipient (null = not given). */
  dsn: QueueDsn;
}

export interface QueueDsn {
  envId: string | null;
  ret: 'FULL' | 'HDRS' | null;
  notify: readonly Notify[] | null;
  orcpt: string | null;
}

/** One past delivery attempt of a queue row, as `queue show` lists it. */
export interface QueueAttempt {
  recipient: string;
  /** When the outcome was recorded (ISO 8601). */
  at: string;
  outcome: 'delivered' | 'deferred' | 'failed';
  error: string | null;
  /** TLS asked for and reached on that attempt's connection, when it had one. */
  tls: TlsOutcome | null;
  /** For 'deferred': when the next attempt was due. */
  nextAttemptAt: string | null;
  /** The node (Store.nodeId) that made the attempt; null for attempts recorded before nodes were named. */
  node: string | null;
}

/** The outcome of one delivery attempt for one recipient. */
export type AttemptRecord = {
  id: string;
  recipient: string;
  tls: TlsOutcome | null;
} & (
  | { outcome: 'delivered' }
  | { outcome: 'deferred'; error: string; nextAttemptAt: Date }
  | { outcome: 'failed'; error: string }
);

export interface ListMessagesOptions {
  /** Default 100, at most 10000. */
  limit?: number;
  /** Only messages delivered to this local mailbox (address, compared normalized). */
  mailbox?: string;
  /**
   * Only messages with at least one local recipient (received mail, not mail only relayed out).
   * Default false. Implied by `mailbox`.
   */
  localOnly?: boolean;
}

export interface ClaimOptions {
  /** How long the claimed rows stay leased (default 10 minutes). */
  leaseMs?: number;
  /**
   * Which rows: 'remote' (target null), 'local' (handoffs to a delivery target), or both
   * (default). Lets a runner lease each kind for as long as its deliveries can take.
   */
  kind?: 'remote' | 'local';
}

/** The waiting part of the queue (metrics): rows queued or deferred, and the oldest one's message. */
export interface QueueStats {
  queued: number;
  deferred: number;
  /** received_at (ISO 8601) of the oldest message with a waiting row; null when none waits. */
  oldestReceivedAt: string | null;
}

export interface ListQueueOptions {
  status?: QueueStatus;
  /** Only the rows of this message (the messages.id index; `queue show ID` and the API read this, not a page of the whole queue). */
  id?: string;
  /** Default 1000, at most 100000. */
  limit?: number;
}

export interface StoredMessage {
  summary: MessageSummary;
  data: Buffer;
}

/** Counters of the group-commit writer, for tests, benchmarks and `postseal status`. */
export interface StoreStats {
  /** Transactions committed (each is one fsync of the WAL). */
  commits: number;
  /** Messages committed by accept(). */
  messages: number;
  /** All write operations committed (messages + user and queue writes). */
  ops: number;
  /** Largest number of operations in one commit. */
  largestBatch: number;
}

/**
 * A cached MTA-STS policy as the store keeps it (RFC 8461 §5.1: the cache survives a restart).
 * The same shape as policy/types.ts MtaStsPolicy, written here because the store sits below
 * policy/ and must not import it; the store therefore satisfies policy's MtaStsCache structurally.
 */
export interface StoredMtaStsPolicy {
  domain: string;
  id: string;
  mode: 'enforce' | 'testing' | 'none';
  mx: string[];
  maxAge: number;
  fetchedAt: number;
  expiresAt: number;
  text: string;
}

/** Reads; safe to use from another process (SQLite: WAL) or another node (PostgreSQL) while the server writes. */
export interface StoreReader extends TlsRptStoreReads {
  /** Newest first. */
  listMessages(opts?: ListMessagesOptions): Awaitable<MessageSummary[]>;
  getMessage(id: string): Awaitable<StoredMessage | null>;
  countMessages(opts?: { mailbox?: string }): Awaitable<number>;
  listUsers(): Awaitable<string[]>;
  /** Constant-time; spends the same scrypt work for unknown users. */
  verifyUser(address: string, password: string): Promise<boolean>;
  /** Whether the user exists (one indexed read; false for a malformed address). */
  hasUser(address: string): boolean;
  /** Whether the user may log in to the web console (users.admin; false for unknown or malformed). */
  isAdmin(address: string): Awaitable<boolean>;
  /** The live API token with this secret (looked up by its SHA-256), or null. */
  verifyApiToken(token: string): Awaitable<ApiTokenInfo | null>;
  /** Every API token (revoked ones too), oldest first; never the secret. */
  listApiTokens(): Awaitable<ApiTokenInfo[]>;
  /** The user's sender patterns besides the login ('*', '*@domain', addresses), sorted. */
  senderPatterns(address: string): string[];
  /** Every alias with its targets, sorted by address (`@domain` catch-all aliases included). */
  listAliases(): Awaitable<AliasEntry[]>;
  /** The targets of one alias (`local@domain` or `@domain`); [] when there is none. One indexed read. */
  aliasTargets(address: string): string[];
  /**
   * The address table's answer for a recipient at a local domain (store/resolve.ts: users,
   * aliases, sub-addressing, catch-alls, postmaster): final local mailboxes and external targets.
   * Synchronous (a few indexed reads): the server calls it at every RCPT for a local domain.
   * No mailbox and no external target = unknown recipient.
   */
  resolveRecipient(address: string, opts: ResolveOptions): RecipientResolution;
  listQueue(opts?: ListQueueOptions): Awaitable<QueueEntry[]>;
  /** Counts of waiting rows and the oldest waiting message (one query over the queue_due index). */
  queueStats(): Awaitable<QueueStats>;
  /** Every recorded delivery attempt of a message's queue rows, oldest first. */
  listAttempts(id: string): Awaitable<QueueAttempt[]>;
  /** The cached MTA-STS policy of a domain (lower-cased), expired or not; null when none. */
  getMtaSts(domain: string): Awaitable<StoredMtaStsPolicy | null>;
  close(): Promise<void>;
}

export interface Store extends StoreReader, TlsRptStoreWrites {
  /**
   * Who this store claims queue rows as (leases) and records attempts for: config `node.id`,
   * default `HOSTNAME-PID`. Two live processes on one PostgreSQL must not share it.
   */
  readonly nodeId: string;
  /** Resolves once durable; the id is short, sortable and unique. */
  accept(msg: IncomingMessage): Promise<{ id: string }>;
  /** Where the server writes large bodies as they arrive; accept() takes them as `spooled`. */
  readonly spool: BodySpool;
  /** Removes spool files no message names (crash leftovers), older than minAgeMs; returns how many. */
  removeOrphanBodies(minAgeMs?: number): number;
  /** Rejects with code 'USER_EXISTS' when the address already has a password. */
  addUser(address: string, password: string, opts?: { senders?: readonly string[]; admin?: boolean }): Promise<void>;
  /** Grants or withdraws console access; false when there is no such user. */
  setAdmin(address: string, admin: boolean): Promise<boolean>;
  /** A new API token: the secret is returned here once and only its hash is stored. TOKEN_EXISTS when a live token has the name. */
  createApiToken(name: string): Promise<{ token: string; info: ApiTokenInfo }>;
  /** Revokes the live token with this name or id; resolves to how many (0 or 1). */
  revokeApiToken(nameOrId: string): Promise<number>;
  /** Records a use of a token (last_used_at). */
  touchApiToken(id: string, at?: Date): Promise<void>;
  /** Adds and removes sender patterns of a user; false when there is no such user. */
  editSenders(address: string, change: { add?: readonly string[]; remove?: readonly string[] }): Promise<boolean>;
  /** Replaces the password of an existing user; false when there is no such user. */
  setPassword(address: string, password: string): Promise<boolean>;
  removeUser(address: string): Promise<boolean>;
  /**
   * Adds targets to an alias (creating it): `address` is `local@domain` or `@domain` (catch-all
   * alias), targets are `local@domain` (users, aliases or external addresses). Resolves to the
   * number of targets that were new. Rejects with 'STORE_BAD_ALIAS' on a malformed address or past
   * 1000 targets.
   */
  addAlias(address: string, targets: readonly string[]): Promise<number>;
  /** Removes one target of an alias, or the whole alias without `target`; resolves to rows removed. */
  removeAlias(address: string, target?: string): Promise<number>;
  /**
   * Claims up to `limit` queued/deferred rows whose next attempt is due at `now` and that no
   * live lease holds, oldest due first, and leases them for `leaseMs` (default 10 minutes).
   */
  claimDue(now: Date, limit: number, opts?: ClaimOptions): Promise<QueueEntry[]>;
  /**
   * Counts the attempt (history: outcome, node), sets the status, clears this node's lease (or an
   * expired one). True when this record decided the row; false when there is no such row, or when
   * another attempt had already finished it (delivered or failed: that outcome stays — a slower
   * node's late answer goes into the history only, and must not bounce or report again).
   */
  recordAttempt(attempt: AttemptRecord): Promise<boolean>;
  /** Deletes the queue rows of a message (or one recipient of it); returns how many. */
  deleteQueued(id: string, recipient?: string): Promise<number>;
  /** Makes queued/deferred rows (of one message, or all) due now; returns how many. */
  retryQueued(id?: string): Promise<number>;
  /**
   * Extends the leases this node still holds (claimed by nodeId, not yet expired at the time of the
   * call) to now + leaseMs; resolves to how many it extended. A row whose lease ran out may have
   * been claimed by another node: it is not taken back. The runner calls this while a delivery runs.
   */
  renewLeases(rows: ReadonlyArray<{ id: string; recipient: string }>, leaseMs: number): Promise<number>;
  /**
   * Clears the queue leases held by this node id, keeping each row's due time; returns how many.
   * Called by serve at start: the leases it finds were left by an earlier process of the same node
   * that died while holding them (SQLite: the one owner, holding the data directory's lock, clears
   * every lease). Leases of other nodes are theirs, or expire by themselves.
   */
  releaseLeases(): Promise<number>;
  /** Stores (replaces) a domain's MTA-STS policy; a policy of mode 'none' removes it instead (RFC 8461 §5). */
  putMtaSts(policy: StoredMtaStsPolicy): Promise<void>;
  /** Removes a domain's cached MTA-STS policy; false when there was none. */
  forgetMtaSts(domain: string): Promise<boolean>;
  stats(): StoreStats;
  /** Flushes pending writes, then closes. Later writes reject with code 'STORE_CLOSED'. */
  close(): Promise<void>;
}

/** The reads SQLite answers at once (the same process reads the file). */
export interface SyncReads {
  listMessages(opts?: ListMessagesOptions): MessageSummary[];
  getMessage(id: string): StoredMessage | null;
  countMessages(opts?: { mailbox?: string }): number;
  listUsers(): string[];
  isAdmin(address: string): boolean;
  verifyApiToken(token: string): ApiTokenInfo | null;
  listApiTokens(): ApiTokenInfo[];
  listAliases(): AliasEntry[];
  listQueue(opts?: ListQueueOptions): QueueEntry[];
  queueStats(): QueueStats;
  listAttempts(id: string): QueueAttempt[];
  getMtaSts(domain: string): StoredMtaStsPolicy | null;
  listTlsRptCounts(opts?: { domain?: string }): TlsRptCount[];
  listTlsRptReports(opts?: { domain?: string }): TlsRptStoredReport[];
}

/** The SQLite reader: the StoreReader interface with synchronous reads. */
export interface SqliteStoreReader extends Omit<StoreReader, keyof SyncReads>, SyncReads {}

/** The SQLite store: the Store interface with synchronous reads (still a Store). */
export interface SqliteStore extends Omit<Store, keyof SyncReads>, SyncReads {}

export interface SqliteStoreOptions {
  /** Claims and attempts are recorded under this name (default HOSTNAME-PID). */
  nodeId?: string;
  /** Upper bound on operations per commit (default 512). */
  maxBatchOps?: number;
  /** Upper bound on message bytes per commit (default 32 MiB); a larger single message goes alone. */
  maxBatchBytes?: number;
  /** Observer of each commit: seconds taken, ops in it (metrics; group-commit.ts). */
  onCommit?: ((seconds: number, ops: number) => void) | null;
}
