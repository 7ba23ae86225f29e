import type {Database} from '../db.js'
import {countLockedBy, releaseOwnLocks} from '../sql/worker.js'
import {describeError} from './async.js'

export interface LockRelease {
  releasedJobLocks: number
  releasedQueueLocks: number
  /** Jobs still locked by these pools afterwards. */
  lockedAfter: number
  /** Set when the release or the check failed (the counts are then what was done before). */
  error?: string
}

/**
 * The one way out for a worker's pools: whatever they still hold after their jobs were
 * completed or failed (an aborted job whose failure write was lost) becomes runnable again
 * now instead of after graphile's 4-hour expiry.
 */
export async function releasePoolLocks(db: Database, poolIds: readonly string[]): Promise<LockRelease> {
  const result: LockRelease = {releasedJobLocks: 0, releasedQueueLocks: 0, lockedAfter: 0}
  try {
    for (const poolId of poolIds) {
      const released = await db.one(releaseOwnLocks, [poolId])
      result.releasedJobLocks += released.jobs
      result.releasedQueueLocks += released.queues
      result.lockedAfter += (await db.one(countLockedBy, [poolId])).count
    }
  } catch (error) {
    result.error = describeError(error)
  }
  return result
}
