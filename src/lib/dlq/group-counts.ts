import type {Database} from '../db.js'
import {groupCountsDrift, groupCountsReady, recountGroupCounts as recountStatement} from '../sql/dlq-select.js'

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

export interface GroupCountsRecount {
  /** Failure groups whose kept count differed from a fresh count (added, removed or changed). */
  groups: number
  /** How many entries those groups' kept counts were off by, in total. */
  entries: number
  /** Entries the fresh count found (those with a current fingerprint). */
  total: number
  /** Nothing was written: the drift was only measured. */
  dryRun: boolean
}

/**
 * Compares backfill_dlq_group_counts with a fresh count of the entries and, unless dryRun,
 * corrects the groups that differ. Writes made while a trigger did not fire (disabled for a
 * bulk load, or under session_replication_role = replica) are otherwise never counted. The
 * correction holds backfill_dlq against writers (SHARE ROW EXCLUSIVE: reads go on) for one
 * scan of it; the dry run reads one snapshot and locks nothing.
 */
export async function recountGroupCounts(db: Database, options: {dryRun?: boolean} = {}): Promise<GroupCountsRecount> {
  const dryRun = options.dryRun ?? false
  const drift = await db.transaction(async (tx) => {
    if (dryRun) {
      await tx.execScript('set transaction isolation level repeatable read, read only')
      return tx.one(groupCountsDrift, [])
    }
    await tx.execScript(`lock table ${db.quotedSchema}.backfill_dlq in share row exclusive mode`)
    return tx.one(recountStatement, [])
  })
  return {groups: drift.groups, entries: Number(drift.entries), total: Number(drift.total), dryRun}
}
