import {Errors} from '@oclif/core'

import {BackfillError, InternalError, UsageError} from '../lib/errors.js'

/** Normalises anything thrown by a command (ours, oclif's parser, pg, bugs) to a BackfillError. */
export function toBackfillError(error: unknown): BackfillError {
  if (error instanceof BackfillError) {
    // A typed flag's validator threw it, and oclif wrapped its message in lines of its own.
    error.message = unwrapFlagParseMessage(error.message)
    return error
  }
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

/**
 * oclif wraps an error thrown by a flag's parse function in "Parsing --x \n\t…\nSee more help
 * with --help"; our validators' messages already name the flag (see flags.ts), so the wrapper goes.
 */
export function unwrapFlagParseMessage(message: string): string {
  const match = /^Parsing --\S+ ?\n\t([\s\S]*?)\nSee more help with --help$/.exec(message)
  return match ? (match[1] ?? message) : message
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
    // "--delay=60000 cannot also be provided when using --run-at": the value shown is the parsed
    // one (milliseconds, a Date), not what was typed; the flag names say it all.
    .map((line) => line.replace(/^(--[\w-]+)=.*( cannot also be provided when using .*)$/, '$1$2'))
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

// The envelope lives in the library: the console's API answers errors in the same document.
export {errorEnvelope, type ErrorEnvelope} from '../lib/envelope.js'
