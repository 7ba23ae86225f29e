import {parseDuration} from './duration.js'
import {UsageError} from './errors.js'

/**
 * The selector grammar shared by the DLQ commands and the jobs commands (and the console):
 * ids, task, queue, job key, a time range, error text and a limit. Every field narrows the
 * selection (AND); values within a field are alternatives (OR). What the fields are matched
 * against (failed_at, created_at, run_at …) is up to the caller's SQL.
 *
 * Errors name the input as the caller calls it (`labels`): the CLI passes its flag names
 * ("--since"), the console its field names; the library's defaults name no interface.
 */
export interface CommonSelector {
  ids?: readonly string[]
  tasks?: readonly string[]
  /** Exact queue names; '' selects jobs/entries without a serial queue (parallel). */
  queues?: readonly string[]
  jobKeys?: readonly string[]
  /** time >= since */
  since?: Date
  /** time < until */
  until?: Date
  /** Case-insensitive substring of the last error. */
  error?: string
  /** At most this many. */
  limit?: number
}

/** Raw values as a person typed them; already parsed values (Date, milliseconds) are accepted too. */
export interface CommonSelectorInput {
  ids?: readonly string[]
  tasks?: readonly string[]
  queues?: readonly string[]
  jobKeys?: readonly string[]
  /** ISO 8601, a duration ago ("2h"), or a Date. */
  since?: string | Date
  until?: string | Date
  /** A duration ("30d") or milliseconds: only those older than this (an upper time bound). */
  olderThan?: string | number
  error?: string
  limit?: number
}

/** How the caller names each input in messages (e.g. "--since" on the command line). */
export interface SelectorLabels {
  ids: string
  since: string
  until: string
  olderThan: string
  error: string
  limit: string
}

export const DEFAULT_LABELS: SelectorLabels = {
  ids: 'id',
  since: 'since',
  until: 'until',
  olderThan: 'older than',
  error: 'error',
  limit: 'limit',
}

export interface BuildOptions<L = SelectorLabels> {
  /** The clock for "a duration ago" (default: this machine's). */
  now?: number
  labels?: Partial<L>
  /** What an id is, for messages ("DLQ entry id", "job id"). */
  idNoun?: string
  /** Where ids can be found, a suggestion for a bad one (e.g. "ids are the first column of: backfill dlq list"). */
  idHint?: string
  /** What the time range applies to, for the empty-range message ("failed", "were created"). */
  timeVerb?: string
}

/**
 * A point in time given as ISO 8601 ("2024-05-01", "2024-05-01T10:00:00Z") or as a duration
 * ago ("2h" = two hours before now, by this machine's clock).
 */
export function parseTimeAgo(text: string, label: string, now = Date.now()): Date {
  const trimmed = text.trim()
  if (/^\d+(?:\.\d+)?\s*(ms|s|m|h|d|w)/.test(trimmed) && !/^\d{4}-/.test(trimmed))
    return new Date(now - parseDuration(trimmed, label))
  // A date alone is UTC midnight; a date-time must say its zone (the operator's TZ must not
  // change what is selected, and enqueue --run-at asks the same).
  if (/^\d{4}-\d{2}-\d{2}$/.test(trimmed)) {
    const date = new Date(`${trimmed}T00:00:00Z`)
    if (!Number.isNaN(date.getTime())) return date
  }
  if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(trimmed)) {
    if (!/(Z|[+-]\d{2}(:?\d{2})?)$/i.test(trimmed)) {
      throw new UsageError(`invalid ${label} "${text}": a date-time needs a time zone`, {
        code: 'E_BAD_TIME',
        suggestions: [`add Z (UTC) or an offset: ${trimmed}Z or ${trimmed}+02:00`],
      })
    }
    const date = new Date(trimmed)
    if (!Number.isNaN(date.getTime())) return date
  }
  throw new UsageError(
    `invalid ${label} "${text}": expected an ISO date/time (2024-05-01T10:00:00Z) or a duration ago (2h, 30d)`,
    {code: 'E_BAD_TIME', suggestions: [`for example 2h, or 2024-05-01T00:00:00Z`]},
  )
}

/** A positive bigint id as a decimal string. */
export function parseId(text: string, noun = 'id', hint?: string): string {
  const trimmed = text.trim()
  if (!/^[1-9]\d{0,18}$/.test(trimmed) || BigInt(trimmed) > 9223372036854775807n) {
    throw new UsageError(`invalid ${noun} "${text}": expected a positive integer`, {
      code: 'E_BAD_ID',
      suggestions: hint ? [hint] : [],
    })
  }
  return trimmed
}

function timeOf(value: string | Date, label: string, now: number): Date {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new UsageError(`invalid ${label}: not a valid date`, {code: 'E_BAD_TIME'})
    return value
  }
  return parseTimeAgo(value, label, now)
}

/** Validates the common fields; throws UsageError (exit 2) naming the input by its label. */
export function buildCommonSelector(input: CommonSelectorInput, options: BuildOptions = {}): CommonSelector {
  const labels = {...DEFAULT_LABELS, ...options.labels}
  const now = options.now ?? Date.now()
  const selector: CommonSelector = {}
  if (input.ids?.length)
    selector.ids = [...new Set(input.ids.map((id) => parseId(id, options.idNoun ?? labels.ids, options.idHint)))]
  if (input.tasks?.length) selector.tasks = [...new Set(input.tasks)]
  if (input.queues?.length) selector.queues = [...new Set(input.queues)]
  if (input.jobKeys?.length) selector.jobKeys = [...new Set(input.jobKeys)]
  if (input.since !== undefined) selector.since = timeOf(input.since, labels.since, now)
  let until = input.until === undefined ? undefined : timeOf(input.until, labels.until, now)
  if (input.olderThan !== undefined) {
    const ms = typeof input.olderThan === 'number' ? input.olderThan : parseDuration(input.olderThan, labels.olderThan)
    if (!Number.isFinite(ms) || ms < 0)
      throw new UsageError(`invalid ${labels.olderThan}: expected a duration`, {code: 'E_INVALID_DURATION'})
    const cutoff = new Date(now - ms)
    until = until === undefined || cutoff < until ? cutoff : until
  }
  if (until !== undefined) selector.until = until
  if (selector.since && selector.until && selector.since >= selector.until) {
    const verb = options.timeVerb ?? 'match'
    throw new UsageError(`the selection is empty: ${labels.since} is not before ${labels.until}/${labels.olderThan}`, {
      code: 'E_EMPTY_RANGE',
      suggestions: [
        `${labels.since} selects those that ${verb} at or after it; ${labels.until}/${labels.olderThan} those before it`,
      ],
    })
  }
  if (input.error !== undefined) {
    if (input.error.trim() === '')
      throw new UsageError(`${labels.error} needs some text to look for`, {code: 'E_USAGE'})
    selector.error = input.error
  }
  if (input.limit !== undefined) {
    if (!Number.isInteger(input.limit) || input.limit < 1)
      throw new UsageError(`invalid ${labels.limit} ${input.limit}: expected a positive integer`, {code: 'E_USAGE'})
    selector.limit = input.limit
  }
  return selector
}

/** True when no common field narrows the selection (--limit alone selects nothing). */
export function isEmptyCommonSelector(selector: CommonSelector): boolean {
  return (
    (selector.ids?.length ?? 0) === 0 &&
    (selector.tasks?.length ?? 0) === 0 &&
    (selector.queues?.length ?? 0) === 0 &&
    (selector.jobKeys?.length ?? 0) === 0 &&
    selector.since === undefined &&
    selector.until === undefined &&
    selector.error === undefined
  )
}

/** The common fields as recorded in the audit trail and shown in --json. */
export function describeCommonSelector(selector: CommonSelector): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  if (selector.ids?.length) out.ids = selector.ids
  if (selector.tasks?.length) out.tasks = selector.tasks
  if (selector.queues?.length) out.queues = selector.queues
  if (selector.jobKeys?.length) out.jobKeys = selector.jobKeys
  if (selector.since) out.since = selector.since.toISOString()
  if (selector.until) out.until = selector.until.toISOString()
  if (selector.error !== undefined) out.error = selector.error
  return out
}

/** Adds the limit and, when nothing narrows the selection, `all: true` (what the audit shows for --all). */
export function finishDescription(out: Record<string, unknown>, limit: number | undefined): Record<string, unknown> {
  const empty = Object.keys(out).length === 0
  if (limit !== undefined) out.limit = limit
  if (empty) out.all = true
  return out
}

/** A list parameter for SQL: null when empty (the filter then folds away). */
export function listParam(values: readonly string[] | undefined): string[] | null {
  return values && values.length > 0 ? [...values] : null
}
