import {Errors} from '@oclif/core'

import {scrubSecrets} from '../lib/connection.js'
import {BackfillError, InternalError, UsageError} from '../lib/errors.js'

/** Normalises anything thrown by a command (ours, oclif's parser, pg, bugs) to a BackfillError. */
export function toBackfillError(error: unknown): BackfillError {
  if (error instanceof BackfillError) return error
  if (error instanceof Errors.CLIError) {
    const exit = (error as Errors.CLIError).oclif?.exit
    // oclif's parser errors (unknown flag, missing argument, bad option value) are usage errors.
    if (exit === 2 || exit === undefined || isParseError(error)) {
      return new UsageError(oneLine(error.message), {
        code: 'E_USAGE',
        suggestions: ['see --help for the accepted flags and values'],
      })
    }
  }
  const message = error instanceof Error ? error.message : String(error)
  return new InternalError(`unexpected error: ${message}`, {
    cause: error,
    suggestions: ['rerun with DEBUG=backfill* for details, and report it if it persists'],
  })
}

function isParseError(error: Error): boolean {
  return /Nonexistent flag|Unexpected argument|Missing required|Expected .* to be one of|Parsing --|flag .* expects/i.test(
    error.message,
  )
}

/**
 * oclif's errors span lines: parse errors ("Parsing --x\n\tExpected …\nSee more help with --help")
 * and flag-relationship errors ("The following error occurred:\n  --a cannot also be provided …").
 */
function oneLine(text: string): string {
  const lines = text
    .split('\n')
    .map((line) => line.trim())
    .filter(
      (line) => line !== '' && !/^See more help with/i.test(line) && !/^The following errors? occurred:?$/i.test(line),
    )
  return (
    lines.reduce(
      (joined, line) => (joined === '' ? line : `${joined}${joined.endsWith(':') ? ' ' : ': '}${line}`),
      '',
    ) || text
  )
}

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
