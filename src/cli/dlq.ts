import {Args, Flags, type Command} from '@oclif/core'

import type {DlqEntry} from '../lib/dlq/entries.js'
import {buildSelector, isEmptySelector, type DlqSelector} from '../lib/dlq/selector.js'
import {UsageError} from '../lib/errors.js'
import {requireMigrated} from '../lib/schema/inspect.js'
import type {Column} from './output.js'
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

export function compactJson(value: unknown): string {
  const text = JSON.stringify(value)
  return text === undefined ? '' : text
}

export const ENTRY_COLUMNS: Column<DlqEntry>[] = [
  {header: 'ID', get: (e) => e.id, align: 'right'},
  {header: 'TASK', get: (e) => e.taskIdentifier, max: 28},
  {header: 'QUEUE', get: (e) => queueLabel(e.queueName), max: 20},
  {header: 'ATTEMPTS', get: (e) => `${e.attempts ?? '?'}/${e.maxAttempts ?? '?'}`, align: 'right'},
  {header: 'RETRIED', get: (e) => (e.requeuedCount > 0 ? `${e.requeuedCount}×` : ''), align: 'right'},
  {header: 'FAILED AT', get: (e) => shortTime(e.failedAt)},
  {header: 'AGE', get: (e) => age(e.failedAt), align: 'right'},
  {header: 'ERROR', get: (e) => e.errorText, max: 60},
  {header: 'PAYLOAD', get: (e) => compactJson(e.payload), max: 40},
]

/** The command line that continues with the same flags (for hints). */
export function schemaFlag(schema: string): string {
  return schema === 'graphile_worker' ? '' : ` --schema ${schema}`
}
