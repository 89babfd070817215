/**
 * The JSON error body of every /api/v1 answer that is not a success: `{"error":{"code","message"}}`.
 * Codes come from the one closed list (src/errors.ts ERROR_CODES), so scripts can branch on them.
 */
import type { ErrorCode } from '../../errors.js';

export interface ApiError {
  error: { code: ErrorCode; message: string };
}

export function apiError(code: ErrorCode, message: string): ApiError {
  return { error: { code, message } };
}
