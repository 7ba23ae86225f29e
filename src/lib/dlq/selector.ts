import type {Database} from '../db.js'
import {databaseNow} from '../sql/schema.js'
import {UsageError} from '../errors.js'
import {isFingerprint} from './fingerprint.js'

/**
 * Which DLQ entries a command acts on. Shared by list, stats, retry and purge; every field
 * narrows the selection (AND), lists within a field are alternatives (OR).
 */
export interface DlqSelector {
  /** DLQ entry ids (backfill_dlq.id). */
  ids?: readonly string[]
  tasks?: readonly string[]
  /** Exact queue_name values: '' selects parallel entries, 'default' the crate's legacy parallel rows. */
  queues?: readonly string[]
  jobKeys?: readonly string[]
  /** failed_at >= since */
  since?: Date
  /** failed_at < until */
  until?: Date
  /** Case-insensitive substring of the last error (string or JSON). */
  error?: string
  /** Failure group fingerprint (see fingerprint.ts). */
  group?: string
  /** At most this many entries, in id order (list: the page size). */
  limit?: number
}

/**
 * The selection as of now: entries that fail (or fail again: the upsert refreshes failed_at)
 * after this moment are left out, so a retry or purge acts on what the operator saw and
 * confirmed, not on entries captured while the prompt was open. Uses the database's clock.
 */
export async function selectionAsOfNow(db: Database, selector: DlqSelector): Promise<DlqSelector> {
  const {now} = await db.one(databaseNow, [])
  return {...selector, until: selector.until && selector.until < now ? selector.until : now}
}

/** True when nothing narrows the selection (a destructive command then needs --all). */
export function isEmptySelector(selector: DlqSelector): boolean {
  return (
    (selector.ids?.length ?? 0) === 0 &&
    (selector.tasks?.length ?? 0) === 0 &&
    (selector.queues?.length ?? 0) === 0 &&
    (selector.jobKeys?.length ?? 0) === 0 &&
    selector.since === undefined &&
    selector.until === undefined &&
    selector.error === undefined &&
    selector.group === undefined
  )
}

/** Positional parameters $1..$7 of every statement that takes a selector (see sql/dlq-ops.ts). */
export type SelectorParams = [
  ids: string[] | null,
  tasks: string[] | null,
  queues: string[] | null,
  jobKeys: string[] | null,
  since: Date | null,
  until: Date | null,
  error: string | null,
]

export function selectorParams(selector: DlqSelector): SelectorParams {
  const list = (values: readonly string[] | undefined): string[] | null =>
    values && values.length > 0 ? [...values] : null
  return [
    list(selector.ids),
    list(selector.tasks),
    list(selector.queues),
    list(selector.jobKeys),
    selector.since ?? null,
    selector.until ?? null,
    selector.error === undefined || selector.error === '' ? null : selector.error,
  ]
}

/** The selection as recorded in the audit trail and shown in --json. */
export function describeSelector(selector: DlqSelector): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  if (selector.ids?.length) out.ids = selector.ids
  if (selector.tasks?.length) out.tasks = selector.tasks
  if (selector.queues?.length) out.queues = selector.queues
  if (selector.jobKeys?.length) out.jobKeys = selector.jobKeys
  if (selector.since) out.since = selector.since.toISOString()
  if (selector.until) out.until = selector.until.toISOString()
  if (selector.error !== undefined) out.error = selector.error
  if (selector.group !== undefined) out.group = selector.group
  if (selector.limit !== undefined) out.limit = selector.limit
  if (Object.keys(out).length === 0 || (Object.keys(out).length === 1 && out.limit !== undefined)) out.all = true
  return out
}

import {parseDuration} from '../duration.js'

export {parseDuration}

/**
 * A point in time given as ISO 8601 ("2024-05-01", "2024-05-01T10:00:00Z") or as a duration
 * ago ("2h" = two hours before now, by this machine's clock).
 */
export function parseTimeAgo(text: string, flag: string, now = Date.now()): Date {
  const trimmed = text.trim()
  if (/^\d+(?:\.\d+)?\s*(ms|s|m|h|d|w)/.test(trimmed) && !/^\d{4}-/.test(trimmed))
    return new Date(now - parseDuration(trimmed, flag))
  // A date alone is UTC midnight; a date-time must say its zone (the operator's TZ must not
  // change what is selected, and enqueue --run-at asks the same).
  if (/^\d{4}-\d{2}-\d{2}$/.test(trimmed)) {
    const date = new Date(`${trimmed}T00:00:00Z`)
    if (!Number.isNaN(date.getTime())) return date
  }
  if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(trimmed)) {
    if (!/(Z|[+-]\d{2}(:?\d{2})?)$/i.test(trimmed)) {
      throw new UsageError(`invalid ${flag} "${text}": a date-time needs a time zone`, {
        code: 'E_BAD_TIME',
        suggestions: [`add Z (UTC) or an offset: ${trimmed}Z or ${trimmed}+02:00`],
      })
    }
    const date = new Date(trimmed)
    if (!Number.isNaN(date.getTime())) return date
  }
  throw new UsageError(
    `invalid ${flag} "${text}": expected an ISO date/time (2024-05-01T10:00:00Z) or a duration ago (2h, 30d)`,
    {
      code: 'E_BAD_TIME',
      suggestions: [`example: ${flag} 2h, or ${flag} 2024-05-01T00:00:00Z`],
    },
  )
}

/** A positive bigint id as a decimal string. */
export function parseEntryId(text: string): string {
  const trimmed = text.trim()
  if (!/^[1-9]\d{0,18}$/.test(trimmed) || BigInt(trimmed) > 9223372036854775807n) {
    throw new UsageError(`invalid DLQ entry id "${text}": expected a positive integer`, {
      code: 'E_BAD_ID',
      suggestions: ['ids are the first column of: backfill dlq list'],
    })
  }
  return trimmed
}

export interface SelectorInput {
  ids?: readonly string[]
  tasks?: readonly string[]
  queues?: readonly string[]
  jobKeys?: readonly string[]
  /** A Date, or text for parseTimeAgo (ISO 8601 or a duration ago). */
  since?: Date | string
  until?: Date | string
  /** Milliseconds, or a duration as text ("30d"). */
  olderThan?: number | string
  error?: string
  group?: string
  limit?: number
}

/** Validates raw flag values into a selector; throws UsageError (exit 2) on bad input. */
export function buildSelector(input: SelectorInput, now = Date.now()): DlqSelector {
  const selector: DlqSelector = {}
  if (input.ids?.length) selector.ids = [...new Set(input.ids.map(parseEntryId))]
  if (input.tasks?.length) selector.tasks = [...new Set(input.tasks)]
  if (input.queues?.length) selector.queues = [...new Set(input.queues)]
  if (input.jobKeys?.length) selector.jobKeys = [...new Set(input.jobKeys)]
  const time = (value: Date | string, flag: string): Date =>
    value instanceof Date ? value : parseTimeAgo(value, flag, now)
  if (input.since !== undefined) selector.since = time(input.since, '--since')
  let until = input.until === undefined ? undefined : time(input.until, '--until')
  if (input.olderThan !== undefined) {
    const ms = typeof input.olderThan === 'number' ? input.olderThan : parseDuration(input.olderThan, '--older-than')
    const cutoff = new Date(now - ms)
    until = until === undefined || cutoff < until ? cutoff : until
  }
  if (until !== undefined) selector.until = until
  if (selector.since && selector.until && selector.since >= selector.until) {
    throw new UsageError('the selection is empty: --since is not before --until/--older-than', {
      code: 'E_EMPTY_RANGE',
      suggestions: ['--since selects entries that failed at or after it; --until/--older-than those before it'],
    })
  }
  if (input.error !== undefined) {
    if (input.error.trim() === '') throw new UsageError('--error needs some text to look for', {code: 'E_USAGE'})
    selector.error = input.error
  }
  if (input.group !== undefined) {
    const group = input.group.trim().toLowerCase()
    if (!isFingerprint(group)) {
      throw new UsageError(`invalid --group "${input.group}": expected a 12-character fingerprint`, {
        code: 'E_BAD_GROUP',
        suggestions: ['fingerprints are listed by: backfill dlq stats'],
      })
    }
    selector.group = group
  }
  if (input.limit !== undefined) {
    if (!Number.isInteger(input.limit) || input.limit < 1)
      throw new UsageError(`invalid --limit ${input.limit}: expected a positive integer`, {code: 'E_USAGE'})
    selector.limit = input.limit
  }
  return selector
}
