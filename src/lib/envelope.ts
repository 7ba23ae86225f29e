import {scrubSecrets} from './connection.js'
import type {BackfillError} from './errors.js'

/** The JSON error document of every command under --json and of every console API error. */
export interface ErrorEnvelope {
  error: {
    code: string
    message: string
    exitCode: number
    suggestions: readonly string[]
    details?: Record<string, unknown>
  }
}

export function errorEnvelope(error: BackfillError, secrets: readonly string[]): ErrorEnvelope {
  return {
    error: {
      code: error.code,
      message: scrubSecrets(error.message, secrets),
      exitCode: error.exitCode,
      suggestions: error.suggestions.map((s) => scrubSecrets(s, secrets)),
      ...(error.details ? {details: error.details} : {}),
    },
  }
}
