import type {Database} from '../db.js'
import {groupCountsReady} from '../sql/dlq-select.js'

/**
 * Runs fn in a read-only repeatable-read transaction, told whether backfill_dlq_group_counts
 * can be trusted in its snapshot (the table exists and every trigger keeping it fires): the
 * counts and the entries fn reads are then one consistent picture. Else fn scans.
 */
export async function withGroupCounts<T>(db: Database, fn: (tx: Database, ready: boolean) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.execScript('set transaction isolation level repeatable read, read only')
    const {ready} = await tx.one(groupCountsReady, [db.schema])
    return fn(tx, ready)
  })
}
