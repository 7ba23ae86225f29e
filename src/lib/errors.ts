/**
 * Typed errors of the core library. Each class carries the process exit code
 * the CLI uses for it, so the mapping lives in exactly one place (EXIT_CODES).
 */

export const EXIT_CODES = {
  ok: 0,
  internal: 1,
  usage: 2,
  config: 3,
  precondition: 4,
  aborted: 5,
  checkFailed: 6,
  timeout: 7,
  interrupted: 130,
} as const

export type ExitCode = (typeof EXIT_CODES)[keyof typeof EXIT_CODES]

export interface BackfillErrorOptions {
  /** Things the user can do next, each one line. */
  suggestions?: readonly string[]
  cause?: unknown
  /** Extra machine-readable facts for the JSON error envelope. */
  details?: Record<string, unknown>
}

export abstract class BackfillError extends Error {
  /** Stable machine-readable code, e.g. E_NOT_MIGRATED. */
  abstract readonly code: string
  abstract readonly exitCode: ExitCode
  readonly suggestions: readonly string[]
  readonly details: Record<string, unknown> | undefined

  constructor(message: string, options: BackfillErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = new.target.name
    this.suggestions = options.suggestions ?? []
    this.details = options.details
  }
}

/** Bad input: invalid flag values, malformed JSON, unsafe identifiers. Nothing was changed. */
export class UsageError extends BackfillError {
  readonly code: string
  readonly exitCode = EXIT_CODES.usage
  constructor(message: string, options: BackfillErrorOptions & {code?: string} = {}) {
    super(message, options)
    this.code = options.code ?? 'E_USAGE'
  }
}

/** Missing or invalid configuration (no database configured, malformed URL). */
export class ConfigError extends BackfillError {
  readonly code: string
  readonly exitCode = EXIT_CODES.config
  constructor(message: string, options: BackfillErrorOptions & {code?: string} = {}) {
    super(message, options)
    this.code = options.code ?? 'E_CONFIG'
  }
}

/** The database could not be reached or refused us (network, auth, missing database, permissions). */
export class ConnectionError extends BackfillError {
  readonly code: string
  readonly exitCode = EXIT_CODES.config
  constructor(message: string, options: BackfillErrorOptions & {code?: string} = {}) {
    super(message, options)
    this.code = options.code ?? 'E_CONNECTION'
  }
}

/** The role lacks a privilege the operation needs. */
export class PermissionError extends BackfillError {
  readonly code: string
  readonly exitCode = EXIT_CODES.config
  constructor(message: string, options: BackfillErrorOptions & {code?: string} = {}) {
    super(message, options)
    this.code = options.code ?? 'E_PERMISSION'
  }
}

/** The database is not in a state that allows the operation (e.g. schema not migrated). */
export class PreconditionError extends BackfillError {
  readonly code: string
  readonly exitCode = EXIT_CODES.precondition
  constructor(message: string, options: BackfillErrorOptions & {code?: string} = {}) {
    super(message, options)
    this.code = options.code ?? 'E_PRECONDITION'
  }
}

/** The graphile-worker schema (or the DLQ table) is missing. */
export class NotMigratedError extends PreconditionError {
  constructor(message: string, options: BackfillErrorOptions = {}) {
    super(message, {...options, code: 'E_NOT_MIGRATED'})
  }
}

/** The user declined a confirmation prompt. */
export class AbortedError extends BackfillError {
  readonly code = 'E_ABORTED'
  readonly exitCode = EXIT_CODES.aborted
}

/** A health gate found a threshold violated. */
export class CheckFailedError extends BackfillError {
  readonly code = 'E_CHECK_FAILED'
  readonly exitCode = EXIT_CODES.checkFailed
}

/** PostgreSQL ended a statement, a lock wait or an idle transaction at a session limit. Nothing was committed by it. */
export class TimeoutError extends BackfillError {
  readonly code = 'E_TIMEOUT'
  readonly exitCode = EXIT_CODES.timeout
}

/** The operation was interrupted by a signal. */
export class InterruptedError extends BackfillError {
  readonly code = 'E_INTERRUPTED'
  readonly exitCode = EXIT_CODES.interrupted
}

/** Anything we did not anticipate. */
export class InternalError extends BackfillError {
  readonly code = 'E_INTERNAL'
  readonly exitCode = EXIT_CODES.internal
}

export function isBackfillError(error: unknown): error is BackfillError {
  return error instanceof BackfillError
}
