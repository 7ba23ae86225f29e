/**
 * Priorities of the Rust backfill crate (lower runs first, as graphile-worker fetches
 * `priority asc, run_at`), and the job flag that reserves worker capacity for fast jobs.
 */
export const Priority = {
  EMERGENCY: -20,
  FAST_HIGH: -10,
  FAST_DEFAULT: -5,
  BULK_DEFAULT: 0,
  BULK_LOW: 5,
  BULK_LOWEST: 10,
} as const

/** The crate's default (graphile-worker's own default is 25). */
export const DEFAULT_MAX_ATTEMPTS = 8

/**
 * Set on every job backfill enqueues with priority >= 0. A worker running with reserved fast
 * capacity gives its fast pool `forbiddenFlags: [BULK_FLAG]`, so bulk jobs can never occupy
 * those slots. Jobs enqueued by other runtimes carry no flag and count as fast there.
 */
export const BULK_FLAG = 'backfill:bulk'

export function isBulkPriority(priority: number): boolean {
  return priority >= 0
}

/** The flags to store for a job: the caller's, plus BULK_FLAG for bulk priorities (deduplicated). */
export function flagsForPriority(priority: number, flags: readonly string[] = []): string[] | null {
  const all = isBulkPriority(priority) ? [...flags, BULK_FLAG] : [...flags]
  const unique = [...new Set(all)]
  return unique.length > 0 ? unique : null
}

/** Bounded metric label for a priority, as the crate's `priority_band`. */
export function priorityBand(priority: number): string {
  if (priority <= -20) return 'emergency'
  if (priority <= -10) return 'fast_high'
  if (priority <= -1) return 'fast_default'
  if (priority === 0) return 'bulk_default'
  if (priority <= 5) return 'bulk_low'
  if (priority <= 10) return 'bulk_lowest'
  return 'other'
}
