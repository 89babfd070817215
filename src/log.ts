/**
 * Structured logging (pino, JSON lines on stderr). One line per session and per message; the
 * server never passes secrets (passwords, AUTH lines, message bodies) to the logger.
 */
import pino from 'pino';

/** What the library logs through: pino fits it, and so does any object with these methods. */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  /** When present and false for a level, callers may skip building that level's log object. */
  isLevelEnabled?(level: 'debug' | 'info' | 'warn' | 'error'): boolean;
}

export function createLogger(level: 'debug' | 'info' | 'warn' | 'error' | 'silent'): Logger {
  return pino({ level, base: { app: 'postseal' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: false }));
}

/** A logger that drops everything (library use without logs, benchmarks). */
export const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {}, isLevelEnabled: () => false };
