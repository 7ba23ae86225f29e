/**
 * Job states as on-call people think of them, derived from graphile-worker's columns of
 * _private_jobs (and the job's serial queue). This is the one place they are defined; the
 * SQL in sql/jobs-select.ts (stateSql, statePredicateSql) implements exactly this table,
 * first match wins:
 *
 * | state     | condition                                                        |
 * |-----------|------------------------------------------------------------------|
 * | running   | locked_at is not null (a worker fetched it; see the owner's liveness) |
 * | exhausted | attempts >= max_attempts: graphile will not run it again; waiting for DLQ capture |
 * | scheduled | run_at in the future, never attempted (attempts = 0)             |
 * | retrying  | run_at in the future after a failed attempt (attempts > 0)        |
 * | blocked   | due (run_at <= now) but its serial queue is locked by another job |
 * | ready     | due, and nothing stops a worker that knows the task from taking it |
 *
 * "now" is the database's clock, or the moment a selection was confirmed.
 */
export const JOB_STATES = ['ready', 'scheduled', 'running', 'retrying', 'exhausted', 'blocked'] as const
export type JobState = (typeof JOB_STATES)[number]

/** States a worker may still pick up (graphile's is_available: unlocked, attempts left). */
export const WAITING_STATES: readonly JobState[] = ['ready', 'scheduled', 'retrying', 'blocked']

export const STATE_DESCRIPTIONS: Readonly<Record<JobState, string>> = {
  ready: 'due now; a worker that knows the task will take it',
  scheduled: 'run_at is in the future; never attempted',
  running: 'locked by a worker (see the owner and its liveness)',
  retrying: 'an attempt failed; the next one waits for run_at',
  exhausted: 'no attempts left; graphile will not run it again (dlq capture moves it to the DLQ)',
  blocked: 'due, but its serial queue is locked by another job, which runs first',
}

export function isJobState(value: string): value is JobState {
  return (JOB_STATES as readonly string[]).includes(value)
}

/** The columns the state is derived from. */
export interface StateFacts {
  lockedAt: Date | null
  attempts: number
  maxAttempts: number
  runAt: Date
  /** The job's serial queue is locked (false for parallel jobs). */
  queueLocked: boolean
}

/** The state of a job at `now` (the TypeScript twin of stateSql, used by tests and the console). */
export function deriveState(facts: StateFacts, now: Date): JobState {
  if (facts.lockedAt !== null) return 'running'
  if (facts.attempts >= facts.maxAttempts) return 'exhausted'
  if (facts.runAt > now) return facts.attempts > 0 ? 'retrying' : 'scheduled'
  if (facts.queueLocked) return 'blocked'
  return 'ready'
}
