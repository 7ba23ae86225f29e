import type {Database} from '../db.js'
import {UsageError} from '../errors.js'
import {purgeLockedEntries, purgeNextEntries} from '../sql/dlq-actions.js'
import {auditContext, type AuditOptions} from './audit.js'
import {forEachBatch} from './scan.js'
import {describeSelector, selectorParams, type DlqSelector} from './selector.js'

export interface PurgeOptions extends AuditOptions {
  selector: DlqSelector
  /** Entries deleted per statement (short transactions: the crate's writers are never blocked for long). */
  batchSize?: number
  signal?: AbortSignal
  onBatch?: (progress: {batch: number; purged: number}) => void
}

export interface PurgeResult {
  run: string
  purged: number
  batches: number
  byTask: Record<string, number>
  interrupted: boolean
  durationMs: number
}

export const DEFAULT_PURGE_BATCH = 5000

/**
 * Deletes the selected entries for good, batch by batch: each batch locks its entries
 * (skipping any a concurrent retry holds) and deletes them with their audit row in one
 * transaction, so a million rows never become one long statement holding the table.
 */
export async function purgeDlq(db: Database, options: PurgeOptions): Promise<PurgeResult> {
  if (options.batchSize !== undefined && (!Number.isInteger(options.batchSize) || options.batchSize < 1 || options.batchSize > 100_000)) {
    throw new UsageError(`invalid batch size ${options.batchSize}: expected 1 to 100000`, {code: 'E_USAGE'})
  }
  const started = performance.now()
  const audit = auditContext(options)
  const selection = describeSelector(options.selector)
  const result: PurgeResult = {run: audit.run, purged: 0, batches: 0, byTask: {}, interrupted: false, durationMs: 0}
  let batch = 0
  const params = selectorParams(options.selector)
  const auditParams = () => [audit.actor.osUser, audit.actor.hostname, audit.reason, selection, {run: audit.run, batch: ++batch}] as const
  const loop = await forEachBatch(
    db,
    {selector: options.selector, batchSize: options.batchSize ?? DEFAULT_PURGE_BATCH, signal: options.signal},
    {
      next: async (tx, after, limit) => {
        const rows = await tx.rows(purgeNextEntries, [...auditParams(), ...params, after, limit])
        return {rows, examined: rows.length, lastId: rows[0]?.max_id ?? null}
      },
      locked: (tx, ids) => tx.rows(purgeLockedEntries, [...auditParams(), ids]),
    },
    (rows) => {
      result.purged += rows.length
      for (const row of rows) result.byTask[row.task_identifier] = (result.byTask[row.task_identifier] ?? 0) + 1
      options.onBatch?.({batch, purged: result.purged})
    },
  )
  result.batches = loop.batches
  result.interrupted = loop.interrupted
  result.durationMs = performance.now() - started
  return result
}
