import type {Database} from '../db.js'
import {entriesById} from '../sql/dlq-select.js'
import {toEntry, type DlqEntry} from './entries.js'
import {peekSelectedIds} from './scan.js'
import type {DlqSelector} from './selector.js'
import {dlqStats, type DlqStats} from './stats.js'

export interface SelectionPreview {
  /** Count, per task and queue, failure groups (and key conflicts when asked) of exactly the selection. */
  stats: DlqStats
  /** The first entries a retry or purge would take, in their order. */
  sample: DlqEntry[]
}

/** What a retry or purge of this selection would act on (read-only: the dry run). */
export async function previewSelection(
  db: Database,
  options: {selector: DlqSelector; checkKeyConflicts?: boolean; sampleSize?: number},
): Promise<SelectionPreview> {
  const stats = await dlqStats(db, {selector: options.selector, checkKeyConflicts: options.checkKeyConflicts})
  const ids: string[] = []
  for await (const id of peekSelectedIds(db, options.selector, 1000)) {
    ids.push(id)
    if (ids.length >= (options.sampleSize ?? 10)) break
  }
  const sample = ids.length === 0 ? [] : (await db.rows(entriesById, [ids])).map(toEntry)
  return {stats, sample}
}
