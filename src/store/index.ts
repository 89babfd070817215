/**
 * Public surface of the store: the Store interface and its types, and the SQLite factories.
 */
export type {
  AttemptRecord,
  ListMessagesOptions,
  ListQueueOptions,
  QueueAttempt,
  QueueEntry,
  QueueStatus,
  SqliteStore,
  SqliteStoreOptions,
  SqliteStoreReader,
  Awaitable,
  Store,
  StoredMessage,
  StoreReader,
  StoreStats,
  StoredMtaStsPolicy,
} from './types.js';
export { QUEUE_STATUSES } from './types.js';
export type { TlsRptCount, TlsRptStoredReport } from './tlsrpt.js';
export type { ApiTokenInfo } from './tokens.js';
export { openSqliteStore, openSqliteStoreReadOnly } from './sqlite-store.js';
export { newMessageId } from './ids.js';
export { lockDataDir, OWNER_FILE, type OwnerLock } from './owner.js';
export { normalizeAddress, domainOf } from './address.js';
export { openPgStore, type PgStoreOptions } from './pg/pg-store.js';
export { migratePg, PG_SCHEMA_VERSION } from './pg/schema.js';
