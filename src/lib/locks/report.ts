import type {Database} from '../db.js'
import {listLocks, type ListLocksOptions, type LockEntry, type LockOwner, type WorkerSeen} from './list.js'
import type {Liveness} from './owners.js'

/** `locks list --json` and the console's locks page: one document, built here for both. */
export interface LocksListResult {
  schema: string
  at: Date
  /** Every owner holding a lock (filtered by owner), dead first. */
  owners: LockOwner[]
  /** The locks shown (at most limit), oldest first. */
  locks: LockEntry[]
  totals: {jobs: number; queues: number; byLiveness: Record<Liveness, number>}
  /** Locks left out by limit or liveness. */
  omitted: number
  workers: WorkerSeen[]
  evidence: {registry: boolean; rustHeartbeats: boolean}
}

export interface LocksReportOptions extends ListLocksOptions {
  /** Only locks whose owner has one of these livenesses. */
  liveness?: readonly Liveness[]
  /** At most this many locks (oldest first; default 100). */
  limit?: number
}

export async function locksReport(db: Database, options: LocksReportOptions = {}): Promise<LocksListResult> {
  const {liveness, limit = 100, ...listOptions} = options
  const listing = await listLocks(db, listOptions)
  const wanted = liveness && liveness.length > 0 ? new Set<string>(liveness) : undefined
  const matching = listing.locks.filter((l) => !wanted || wanted.has(l.liveness))
  const locks = matching.slice(0, limit)
  const byLiveness: Record<Liveness, number> = {live: 0, dead: 0, unknown: 0}
  for (const l of listing.locks) byLiveness[l.liveness] += 1
  return {
    schema: listing.schema,
    at: listing.now,
    owners: listing.owners.filter((o) => !wanted || wanted.has(o.liveness)),
    locks,
    totals: {
      jobs: listing.locks.filter((l) => l.kind === 'job').length,
      queues: listing.locks.filter((l) => l.kind === 'queue').length,
      byLiveness,
    },
    omitted: listing.locks.length - locks.length,
    workers: listing.workers,
    evidence: listing.evidence,
  }
}
