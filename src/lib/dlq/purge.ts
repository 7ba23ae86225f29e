import type {Database} from '../db.js'
import {UsageError} from '../errors.js'
import {
  dlqTablePages,
  insertDlqAudit,
  purgeLockedEntries,
  purgeNextEntries,
  purgePageRange,
} from '../sql/dlq-actions.js'
import {auditContext, type AuditOptions} from './audit.js'
import {forEachBatch, withDeadlockRetry} from './scan.js'
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
  interrupted: boolean
  durationMs: number
}

export const DEFAULT_PURGE_BATCH = 10_000
/** Time per batch the adaptive page-range batches aim below (a blocked upsert waits at most about this). */
const BATCH_TARGET_MS = 200
/** The largest adaptive batch, in rows. */
const MAX_ADAPTIVE_BATCH = 500_000
/** Rounds over the pages the table grew by while a page-range purge ran. */
const MAX_EXTENSIONS = 3
/** Rows per page assumed before the table was ever analysed. */
const FALLBACK_ROWS_PER_PAGE = 40

/**
 * Deletes the selected entries for good, batch by batch, each batch one short transaction
 * with its audit row, so a million rows never become one long statement holding the table.
 *
 * Without --group or --limit, batches are ranges of heap pages (TID range scans,
 * PostgreSQL >= 14): as cheap per row as one DELETE of the whole selection. Rows a concurrent
 * retry holds are waited for (then found gone), and a batch chosen as a deadlock victim (a
 * capture upserting the same rows) is simply run again. Entries that land in the DLQ while
 * the purge runs may or may not be included; pages the table grew by meanwhile are walked too.
 *
 * With ids or job keys (found by index), --limit (the first N in id order) or --group
 * (fingerprinted here), batches walk the ids and lock with skip locked instead.
 */
export async function purgeDlq(db: Database, options: PurgeOptions): Promise<PurgeResult> {
  if (
    options.batchSize !== undefined &&
    (!Number.isInteger(options.batchSize) || options.batchSize < 1 || options.batchSize > 100_000)
  ) {
    throw new UsageError(`invalid batch size ${options.batchSize}: expected 1 to 100000`, {code: 'E_USAGE'})
  }
  const started = performance.now()
  const audit = auditContext(options)
  const selection = describeSelector(options.selector)
  const result: PurgeResult = {run: audit.run, purged: 0, batches: 0, interrupted: false, durationMs: 0}
  let batch = 0
  const params = selectorParams(options.selector)
  const batchSize = options.batchSize ?? DEFAULT_PURGE_BATCH
  const auditParams = () =>
    [audit.actor.osUser, audit.actor.hostname, audit.reason, selection, {run: audit.run, batch: ++batch}] as const

  // Page ranges pay off when the selection is a large part of the table; ids and job keys are found by index.
  const {selector} = options
  const wide =
    selector.group === undefined && selector.limit === undefined && !selector.ids?.length && !selector.jobKeys?.length
  const table = wide ? await db.maybeOne(dlqTablePages, [db.schema]) : undefined
  if (table?.tid_range_scans) {
    const rowsPerPage = table.rows_per_page ?? FALLBACK_ROWS_PER_PAGE
    let step = Math.max(1, Math.floor(batchSize / rowsPerPage))
    // Without an explicit batch size, batches are sized by time: each one grows while batches
    // finish well under BATCH_TARGET_MS (one short transaction per batch either way), so
    // purging 100k entries costs about one DELETE, and 10M still never holds rows for long.
    const adaptive = options.batchSize === undefined
    const maxStep = Math.max(step, Math.floor(MAX_ADAPTIVE_BATCH / rowsPerPage))
    let page = 0
    let end = Number(table.pages)
    for (let extension = 0; ; extension++) {
      for (let next = page + step; page < end; page = next, next = page + step) {
        const batchStarted = performance.now()
        if (options.signal?.aborted) {
          result.interrupted = true
          break
        }
        // The delete and its audit row commit together; a deadlock victim is run again.
        const deleted = await withDeadlockRetry(() =>
          db.transaction(async (tx) => {
            const count = await tx.exec(purgePageRange, [...params, `(${page},0)`, `(${next},0)`])
            const [osUser, hostname, reason, sel, details] = auditParams()
            if (count > 0)
              await tx.rows(insertDlqAudit, [
                'purge',
                count,
                null,
                null,
                osUser,
                hostname,
                reason,
                sel,
                {...details, pages: [page, next]},
              ])
            return count
          }),
        )
        if (adaptive) {
          const ms = performance.now() - batchStarted
          if (ms < BATCH_TARGET_MS / 4) step = Math.min(maxStep, step * 4)
          else if (ms > BATCH_TARGET_MS) step = Math.max(1, Math.floor(step / 2))
        }
        if (deleted === 0) continue
        result.batches += 1
        result.purged += deleted
        options.onBatch?.({batch: result.batches, purged: result.purged})
      }
      // A selected entry updated while we ran (the crate's requeue bookkeeping, the fingerprint
      // backfill of a starting worker) gets a new row version, on a page added at the end when
      // the pages have no room: walk the pages added since (a few rounds: writers may keep
      // adding). A version placed in a page already walked (room a vacuum freed meanwhile)
      // is still missed; rerunning the purge takes it.
      if (result.interrupted || extension >= MAX_EXTENSIONS) break
      const grown = Number((await db.maybeOne(dlqTablePages, [db.schema]))?.pages ?? 0)
      if (grown <= end) break
      // From the old end: the last range may have reached past it before those pages existed.
      page = Math.min(page, end)
      end = grown
    }
    result.durationMs = performance.now() - started
    return result
  }

  const loop = await forEachBatch(
    db,
    {selector: options.selector, batchSize, signal: options.signal},
    {
      next: async (tx, after, limit) => {
        const rows = await tx.rows(purgeNextEntries, [...auditParams(), ...params, after, limit])
        return {rows, examined: rows.length, lastId: rows[0]?.max_id ?? null}
      },
      locked: (tx, ids) => tx.rows(purgeLockedEntries, [...auditParams(), ids]),
    },
    (rows) => {
      result.batches += 1
      result.purged += rows.length
      options.onBatch?.({batch: result.batches, purged: result.purged})
    },
  )
  result.interrupted = loop.interrupted
  result.durationMs = performance.now() - started
  return result
}
