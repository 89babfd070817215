/**
 * Structured logging (pino, JSON lines on stderr). One line per session and per message; the
 * server never passes secrets (passwords, AUTH lines, message bodies) to the logger.
 */
import pino from 'pino';
import type { Logger } from './server/types.js';

export function createLogger(level: 'debug' | 'info' | 'warn' | 'error' | 'silent'): Logger {
  return pino({ level, base: { app: 'postseal' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: false }));
}

/** A logger that drops everything (library use without logs, benchmarks). */
export const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {}, isLevelEnabled: () => false };
