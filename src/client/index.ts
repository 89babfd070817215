/**
 * Public surface of the SMTP client: the SmtpClient conversation API, TLS levels,
 * deliver() (one attempt at one level), deliverBatch() (several messages over one connection),
 * message helpers, and the error codes.
 *
 * Invariant: everything `postseal send`, the queue runner and `postseal check` need is exported
 * here; they import nothing else from src/client.
 */
export { SmtpClient, AUTH_MECHANISMS } from './client.js';
export type { StartTlsResult, AuthMechanism } from './client.js';
export { TLS_LEVELS, TLS_REACHED, isTlsLevel, atLeast, triesTls, requiresTls, verifiesCert, usesDane, checksPkix, satisfies, tlsLevelRank } from './levels.js';
export type { TlsLevel, TlsReached } from './levels.js';
export { deliver, deliverBatch, DEFAULT_MAX_PER_CONNECTION } from './deliver.js';
// One session at a TLS level (LMTP uses it too: delivery/lmtp.ts).
export { openSession, endSession, toClientError } from './open-session.js';
export type { SessionAttempt } from './open-session.js';
export type { DeliverOptions, DeliveryResult, DeliveryError, RecipientOutcome, RecipientStatus, DeliveryFinding, BatchOptions, BatchMessage, BatchResult, SessionOptions } from './deliver.js';
export type { SendEnvelope, SendOptions, TransactionResult, RecipientResult } from './transaction.js';
export { describeTransaction } from './transaction.js';
export { SmtpClientError, CLIENT_ERROR_CODES, isClientError } from './errors.js';
export type { ClientErrorCode } from './errors.js';
export { DEFAULT_TIMEOUTS, DEFAULT_REPLY_LIMITS, uniformTimeouts } from './options.js';
export type { Timeouts, TimeoutName, Limit, ReplyLimits, ConnectOptions } from './options.js';
export type { ClientTlsOptions, TlsSessionInfo } from './tls-session.js';
export { Transcript, redactAuth } from './transcript.js';
export type { TranscriptEntry, TranscriptPhase } from './transcript.js';
export { buildMessage, prepareContent, normalizeLineEndings, assertNoLineBreak } from './message.js';
export type { SimpleMessage, BareLineEndings } from './message.js';
export { resolveMxHosts, systemResolver } from './resolver.js';
export type { Resolver, MxHost, MxResult } from './resolver.js';
export { deliverToDomain, deliverBatchToDomain } from './mx-deliver.js';
export type { DomainDelivery, DomainBatchDelivery, DomainPlan, MxPlan, SkippedHost } from './mx-deliver.js';
