import {Args, Flags, type Command} from '@oclif/core'

import {entryDocument} from '../lib/json-document.js'
import type {DlqEntry} from '../lib/dlq/entries.js'
import type {DlqStats} from '../lib/dlq/stats.js'
import {buildSelector, isEmptySelector, type DlqSelector} from '../lib/dlq/selector.js'
import {UsageError} from '../lib/errors.js'
import {requireMigrated} from '../lib/schema/inspect.js'
import type {Column, Output} from './output.js'
import {
  CLI_SELECTOR_LABELS,
  commonSelectorFlags,
  commonSelectorInput,
  refuseEmptySelection,
  SelectorCommand,
  type CommonSelectorFlagValues,
} from './selection.js'

/** Selector flags shared by dlq list, stats, retry and purge (--limit is per command). */
export const selectorFlags = {
  ...commonSelectorFlags({
    one: 'entry',
    many: 'entries',
    time: 'failed',
    queue:
      "Only entries with this queue_name (repeatable; '' selects parallel entries, 'default' the crate's legacy rows).",
    error: 'Only entries whose last error contains this text (case-insensitive; any field of a JSON error).',
  }),
  group: Flags.string({
    helpGroup: 'SELECTION',
    summary: 'Only entries of this failure group (a fingerprint shown by dlq stats).',
  }),
}

export const idsArg = {
  ids: Args.string({description: 'DLQ entry ids (repeatable: 12 13 14).', required: false}),
}

export interface SelectorFlagValues extends CommonSelectorFlagValues {
  group?: string
}

/**
 * Base of the dlq commands: positional ids, the selector flags, and the precondition that
 * the DLQ and backfill's bookkeeping tables exist (exit 4 otherwise, creating nothing).
 */
export abstract class DlqCommand<T extends typeof Command> extends SelectorCommand<T> {
  protected async selector(flags: SelectorFlagValues): Promise<DlqSelector> {
    try {
      return buildSelector(
        {...commonSelectorInput(flags, await this.positionalArgs()), group: flags.group},
        {labels: {...CLI_SELECTOR_LABELS, group: '--group'}, idHint: 'ids are the first column of: backfill dlq list'},
      )
    } catch (error) {
      if ((error as UsageError).code === 'E_BAD_GROUP')
        throw new UsageError((error as UsageError).message, {
          code: 'E_BAD_GROUP',
          suggestions: ['fingerprints are listed by: backfill dlq stats'],
        })
      throw error
    }
  }

  protected async requireDlq(): Promise<void> {
    await requireMigrated(this.db(), {dlq: true})
  }
}

/** Destructive commands never treat "no selector" as "everything". */
export function requireSelection(selector: DlqSelector, all: boolean, command: string): void {
  refuseEmptySelection({
    empty: isEmptySelector(selector),
    all,
    action: command,
    how: 'entries by id, --task, --queue, --job-key, --since/--until/--older-than, --error or --group',
    everything: 'every entry',
  })
}

// --- rendering -------------------------------------------------------------------------------

export function queueLabel(queueName: string): string {
  return queueName === '' ? '(parallel)' : queueName
}

/** "2024-05-01 10:00:00Z" (UTC, seconds). */
export function shortTime(date: Date | null): string {
  if (!date) return '–'
  return `${date.toISOString().slice(0, 19).replace('T', ' ')}Z`
}

/** "42s", "17m", "3h", "12d" since the date. */
export function age(date: Date | null, now = Date.now()): string {
  if (!date) return '–'
  const seconds = Math.max(0, Math.round((now - date.getTime()) / 1000))
  if (seconds < 60) return `${seconds}s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)}h`
  return `${Math.floor(seconds / 86_400)}d`
}

export const ENTRY_COLUMNS: Column<DlqEntry>[] = [
  {header: 'ID', get: (e) => e.id, align: 'right'},
  {header: 'TASK', get: (e) => e.taskIdentifier, max: 28},
  {header: 'QUEUE', get: (e) => queueLabel(e.queueName), max: 20},
  {header: 'ATTEMPTS', get: (e) => attemptsLabel(e), align: 'right'},
  {header: 'RETRIED', get: (e) => (e.requeuedCount > 0 ? `${e.requeuedCount}×` : ''), align: 'right'},
  {header: 'FAILED AT', get: (e) => shortTime(e.failedAt)},
  {header: 'AGE', get: (e) => age(e.failedAt), align: 'right'},
  {header: 'ERROR', get: (e) => e.errorText, max: 60},
  {header: 'PAYLOAD', get: (e) => e.payloadText, max: 40},
]

/**
 * "3/8". A job failed by a permanent error had its attempts used up at once (ours and the
 * Rust crate's PermanentFailurePlugin), so the attempt it failed on is not recorded: say
 * "permanent" rather than a count. Other rows without a count (written by hand) show "–".
 */
export function attemptsLabel(e: Pick<DlqEntry, 'attempts' | 'maxAttempts' | 'failureReason'>): string {
  if (e.attempts === null && /^Permanent failure/i.test(e.failureReason)) return 'permanent'
  return `${e.attempts ?? '–'}/${e.maxAttempts ?? '–'}`
}

/** The dlq stats tables (also the body of retry and purge dry runs). */
export function renderStats(out: Output, stats: DlqStats, top: number): void {
  if (stats.total === 0) {
    out.result('no DLQ entries match the selection')
    return
  }
  out.result(
    `${stats.total} entr${stats.total === 1 ? 'y' : 'ies'}, oldest ${shortTime(stats.oldest)} (${age(stats.oldest)} ago), newest ${shortTime(stats.newest)} (${age(stats.newest)} ago)`,
  )
  out.result('')
  out.table(stats.byTask.slice(0, top), [
    {header: 'TASK', get: (t) => t.taskIdentifier},
    {header: 'ENTRIES', get: (t) => String(t.count), align: 'right'},
  ])
  if (stats.byTask.length > top) out.result(`… and ${stats.byTask.length - top} more tasks`)
  out.result('')
  out.table(stats.byQueue.slice(0, top), [
    {header: 'QUEUE', get: (q) => queueLabel(q.queueName)},
    {header: 'ENTRIES', get: (q) => String(q.count), align: 'right'},
  ])
  if (stats.byQueue.length > top) out.result(`… and ${stats.byQueue.length - top} more queues`)
  out.result('')
  out.result(out.color.bold('Failure groups (largest first):'))
  out.table(stats.groups.slice(0, top), [
    {header: 'GROUP', get: (g) => g.fingerprint},
    {header: 'TASK', get: (g) => g.taskIdentifier, max: 28},
    {header: 'ENTRIES', get: (g) => String(g.count), align: 'right'},
    {header: 'FIRST', get: (g) => `${age(g.firstSeen)} ago`, align: 'right'},
    {header: 'LAST', get: (g) => `${age(g.lastSeen)} ago`, align: 'right'},
    {header: 'ERROR (sample)', get: (g) => g.sampleError, max: 70},
  ])
  if (stats.groups.length > top) out.result(`… and ${stats.groups.length - top} more groups`)
  if (stats.groupsTruncated)
    out.warn(
      `${stats.ungrouped} entries fell outside the ${stats.groups.length} groups tracked (too many distinct errors)`,
    )
}

/** The command line that continues with the same flags (for hints). */
export function schemaFlag(schema: string): string {
  return schema === 'graphile_worker' ? '' : ` --schema ${schema}`
}

/** An entry as --json prints it: the payload exactly as stored, once. */
export const entryJson = entryDocument
