import {sleep} from '../sleep.js'

import type {Database} from '../db.js'
import {countLockedBy, releaseOwnLocks} from '../sql/worker.js'
import {describeError} from './async.js'

export interface LockRelease {
  /** Lost completions recorded on the way out (jobs whose handler succeeded). */
  recordedCompletions: number
  releasedJobLocks: number
  releasedQueueLocks: number
  /** Jobs still locked by these pools afterwards; null when that could not be checked. */
  lockedAfter: number | null
  /** Why a release or the check failed (after retries). */
  error?: string
}

/**
 * The one way out for a worker's pools: whatever they still hold after their jobs were
 * completed or failed (an aborted job whose failure write was lost) becomes runnable again
 * now instead of after graphile's 4-hour expiry. Then it counts what is still locked, so the
 * report is a fact: a check that could not run is "unknown", never 0. The database may just
 * have cut every connection (a restart, pg_terminate_backend): each statement is retried
 * until retryForMs has passed.
 *
 * Jobs whose completion graphile-worker could not write (lostCompletions: their handlers ran)
 * are completed by the same statement that releases the rest, never released: released they
 * would run again. Were completion and release separate statements, a completion that failed
 * until the deadline followed by a release that worked (the database back in between) would
 * unlock exactly those jobs. Together, a pool whose statement never got through keeps
 * everything locked under its id; its presence then stops, and any worker's cleanup releases
 * the lot as a dead owner's: the lost completions run again, the one case left where they do
 * (at least once, when the database stayed unreachable for all of retryForMs).
 */
export async function releasePoolLocks(
  db: Database,
  poolIds: readonly string[],
  options: {retryForMs?: number; lostCompletions?: readonly string[]} = {},
): Promise<LockRelease> {
  const deadline = Date.now() + (options.retryForMs ?? 5000)
  const errors = new Set<string>()
  const attempt = async <T>(run: () => Promise<T>): Promise<T | undefined> => {
    for (let delay = 200; ; delay = Math.min(delay * 2, 2000)) {
      try {
        return await run()
      } catch (error) {
        if (Date.now() + delay > deadline) {
          errors.add(describeError(error))
          return undefined
        }
        await sleep(delay)
      }
    }
  }
  const result: LockRelease = {recordedCompletions: 0, releasedJobLocks: 0, releasedQueueLocks: 0, lockedAfter: 0}
  const lost = [...(options.lostCompletions ?? [])]
  for (const poolId of poolIds) {
    const released = await attempt(() => db.one(releaseOwnLocks, [poolId, lost]))
    result.recordedCompletions += released?.completed ?? 0
    result.releasedJobLocks += released?.jobs ?? 0
    result.releasedQueueLocks += released?.queues ?? 0
    const left = await attempt(() => db.one(countLockedBy, [poolId]))
    result.lockedAfter = left === undefined || result.lockedAfter === null ? null : result.lockedAfter + left.count
  }
  if (errors.size > 0) result.error = [...errors].join('; ')
  return result
}
