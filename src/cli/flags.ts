import {Flags} from '@oclif/core'

import {parseMaxAttempts, parsePriority, parseRunAt, PRIORITY_NAMES} from '../lib/client/spec.js'
import {parseTimeAgo} from '../lib/dlq/selector.js'
import {formatDuration, parseDuration} from '../lib/duration.js'
import {UsageError} from '../lib/errors.js'

/**
 * Typed flags: every duration, priority, max-attempts and timestamp value of every command
 * is parsed here, while oclif parses the command line, so a bad value is the same one-line
 * usage error (exit 2) whichever command takes it, before anything connects or changes.
 * The validators themselves live in src/lib (the library and NDJSON lines use them too).
 */

interface FlagContext {
  token?: {input?: string} | undefined
}

/** The flag as the operator gave it: --name, or the environment variable it came from. */
function label(context: unknown, options: {name: string; env?: string | undefined}): string {
  const token = (context as FlagContext | undefined)?.token
  return token === undefined && options.env ? `${options.env} (--${options.name})` : `--${options.name}`
}

type DurationUnit = 'ms' | 's' | 'm' | 'h' | 'd' | 'w'

// A type alias (not an interface): oclif's CustomOptions needs an index signature.
export type DurationFlagOptions = {
  /** Unit of a bare number (POLL_INTERVAL_MS=200 is ms); without it a unit is required. */
  defaultUnit?: DurationUnit
  /** Shortest accepted duration in ms (0 is always allowed when `zero` is set). */
  minMs?: number
  /** Accept 0 (meaning "off") even when below minMs. */
  zero?: boolean
}

/** A duration ("250ms", "30s", "1h30m"; a bare number in defaultUnit) as milliseconds. */
export const duration = Flags.custom<number, DurationFlagOptions>({
  helpValue: 'DURATION',
  async parse(input, context, options) {
    const name = label(context, options)
    const ms = parseDuration(input, {defaultUnit: options.defaultUnit, name})
    if (options.minMs !== undefined && ms < options.minMs && !(options.zero && ms === 0)) {
      throw new UsageError(`${name} ${JSON.stringify(input)} is shorter than ${formatDuration(options.minMs)}`, {
        code: 'E_INVALID_DURATION',
        suggestions: [`use ${formatDuration(options.minMs)} or more${options.zero ? ', or 0 for off' : ''}`],
      })
    }
    return ms
  },
})

/** A duration flag's default, shown in --help as a duration ("5m") rather than milliseconds. */
export function durationDefault(ms: number): {default: number; defaultHelp: () => Promise<string>} {
  return {default: ms, defaultHelp: async () => formatDuration(ms)}
}

/** A priority name (emergency … bulk-lowest) or an integer in smallint range: lower runs first. */
export const priority = Flags.custom<number>({
  helpValue: 'NAME|INT',
  async parse(input, context, options) {
    return parsePriority(input, label(context, options))
  },
})

export const PRIORITY_SUMMARY = `${Object.entries(PRIORITY_NAMES)
  .map(([name, value]) => `${name} (${value})`)
  .join(', ')}, or an integer from -32768 to 32767; lower runs first`

/** Attempts before a job counts as failed: 1..32767. */
export const maxAttempts = Flags.custom<number>({
  helpValue: 'N',
  async parse(input, context, options) {
    return parseMaxAttempts(input, label(context, options))
  },
})

/** An ISO 8601 date-time with a time zone (the same strict reading as enqueue --run-at). */
export const timestamp = Flags.custom<Date>({
  helpValue: 'ISO8601',
  async parse(input, context, options) {
    // parseRunAt returns null only for null/undefined, which oclif never passes.
    return parseRunAt(input, label(context, options)) as Date
  },
})

/** A point in time: ISO 8601 (a date alone is UTC midnight) or a duration ago ("2h", "7d"). */
export const since = Flags.custom<Date>({
  helpValue: 'TIME|DURATION',
  async parse(input, context, options) {
    return parseTimeAgo(input, label(context, options))
  },
})
