import type {Database} from '../db.js'
import {UsageError} from '../errors.js'
import {
  buildCommonSelector,
  describeCommonSelector,
  finishDescription,
  isEmptyCommonSelector,
  listParam,
  parseId,
  type BuildOptions,
  type CommonSelector,
  type CommonSelectorInput,
  type SelectorLabels,
} from '../selector.js'
import {databaseNow} from '../sql/schema.js'
import {isFingerprint} from './fingerprint.js'

export {parseDuration} from '../duration.js'
export {parseTimeAgo} from '../selector.js'

/**
 * Which DLQ entries a command acts on. Shared by list, stats, retry and purge; the common
 * fields (ids, task, queue, job key, time range on failed_at, error, limit) are the grammar
 * of src/lib/selector.ts, shared with the jobs commands; `group` is the DLQ's own.
 */
export interface DlqSelector extends CommonSelector {
  /** DLQ entry ids (backfill_dlq.id). */
  ids?: readonly string[]
  /** Exact queue_name values: '' selects parallel entries, 'default' the crate's legacy parallel rows. */
  queues?: readonly string[]
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

export interface SelectorInput extends CommonSelectorInput {
  group?: string
}

export interface DlqSelectorLabels extends SelectorLabels {
  group: string
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
  return isEmptyCommonSelector(selector) && selector.group === undefined
}

/** Positional parameters $1..$7 of every statement that takes a selector (see sql/dlq-select.ts). */
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
  return [
    listParam(selector.ids),
    listParam(selector.tasks),
    listParam(selector.queues),
    listParam(selector.jobKeys),
    selector.since ?? null,
    selector.until ?? null,
    selector.error === undefined || selector.error === '' ? null : selector.error,
  ]
}

/** The selection as recorded in the audit trail and shown in --json. */
export function describeSelector(selector: DlqSelector): Record<string, unknown> {
  const out = describeCommonSelector(selector)
  if (selector.group !== undefined) out.group = selector.group
  return finishDescription(out, selector.limit)
}

/** A positive bigint DLQ entry id as a decimal string. */
export function parseEntryId(text: string, hint?: string): string {
  return parseId(text, 'DLQ entry id', hint)
}

/**
 * Validates raw values into a selector; throws UsageError (exit 2) on bad input, naming the
 * input by the caller's labels. The second argument is the clock, or the build options.
 */
export function buildSelector(
  input: SelectorInput,
  options: number | BuildOptions<DlqSelectorLabels> = {},
): DlqSelector {
  const opts = typeof options === 'number' ? {now: options} : options
  const selector: DlqSelector = buildCommonSelector(input, {idNoun: 'DLQ entry id', timeVerb: 'failed', ...opts})
  if (input.group !== undefined) {
    const label = opts.labels?.group ?? 'group'
    const group = input.group.trim().toLowerCase()
    if (!isFingerprint(group)) {
      throw new UsageError(`invalid ${label} "${input.group}": expected a 12-character failure-group fingerprint`, {
        code: 'E_BAD_GROUP',
      })
    }
    selector.group = group
  }
  return selector
}
