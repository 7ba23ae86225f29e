import type {Database} from '../db.js'
import {
  DEFAULT_STALE_JOB_LOCK_TIMEOUT_MS,
  DEFAULT_STALE_QUEUE_LOCK_TIMEOUT_MS,
  planLocks,
  type LockCounts,
} from '../locks/clean.js'
import {listLocks, type LockListing, type WorkerSeen} from '../locks/list.js'
import type {Liveness, LivenessOptions} from '../locks/owners.js'
import {requireMigrated} from '../schema/inspect.js'
import {withGroupCounts} from '../dlq/group-counts.js'
import {dlqCounts, dlqCountsFromGroups, jobCounts} from '../sql/status.js'

/**
 * Job counts by state. The states partition the jobs table except `retrying`, which is
 * the part of ready + scheduled that failed at least once.
 */
export interface JobStateCounts {
  /** Runnable now (available, run_at reached). */
  ready: number
  /** Waiting for a future run_at (new jobs and retries in backoff). */
  scheduled: number
  /** Locked by a worker. */
  running: number
  /** Waiting (ready or scheduled) after at least one failed attempt. */
  retrying: number
  /** Out of attempts and unlocked: waits for DLQ capture (or, without a DLQ, stays forever). */
  exhausted: number
  oldestReadyAt: Date | null
  oldestReadyAgeMs: number | null
}

export interface TaskStatus extends JobStateCounts {
  task: string
  /** DLQ entries of this task (0 without a DLQ table). */
  dlq: number
}

export interface QueueStatus extends JobStateCounts {
  /** Serial queue name; null for the parallel jobs (no queue). */
  queue: string | null
  lockedBy: string | null
  lockedAt: Date | null
  /** Liveness of the queue lock's owner (null when unlocked). */
  lockLiveness: Liveness | null
  dlq: number
}

export interface StatusResult {
  schema: string
  at: Date
  totals: JobStateCounts & {jobs: number; dlq: number | null}
  tasks: TaskStatus[]
  /** The parallel jobs first, then the busiest serial queues. */
  queues: QueueStatus[]
  /** The serial queues beyond the limit, summed. */
  otherQueues: (JobStateCounts & {queues: number; dlq: number}) | null
  /** Serial queues that have jobs. */
  serialQueues: number
  dlq: {exists: boolean; entries: number; oldestFailedAt: Date | null}
  locks: {
    live: LockCounts
    dead: LockCounts
    unknown: LockCounts
    /** Unknown owners' locks older than the default stale timeouts (what `locks clean` frees besides dead ones). */
    stale: LockCounts
  }
  /** Workers seen within the last hour (backfill registry, Rust heartbeats). */
  workers: WorkerSeen[]
  durationMs: number
}

export interface StatusOptions extends LivenessOptions {
  /** Serial queues listed individually (default 20). */
  queueLimit?: number
  staleQueueLockTimeoutMs?: number
  staleJobLockTimeoutMs?: number
  /**
   * A background scan (the queue metrics): the jobs table is read without parallel workers,
   * so the scan takes one core of the database server for longer instead of every core at
   * once, away from the workers it shares the server with.
   */
  background?: boolean
}

export const DEFAULT_QUEUE_LIMIT = 20

/** The queue's state for an on-call engineer: counts per task and queue, locks, workers. Read-only. */
export async function queueStatus(db: Database, options: StatusOptions = {}): Promise<StatusResult> {
  const started = performance.now()
  const inspection = await requireMigrated(db)
  const limit = Math.max(0, Math.floor(options.queueLimit ?? DEFAULT_QUEUE_LIMIT))
  const countJobs = options.background
    ? db.transaction(async (tx) => {
        await tx.execScript('set local max_parallel_workers_per_gather = 0')
        return tx.rows(jobCounts, [limit])
      })
    : db.rows(jobCounts, [limit])
  const [counts, listing] = await Promise.all([countJobs, listLocks(db, {...options, inspection})])
  const dlqExists = inspection.backfill.dlqExists
  const namedQueues = counts.filter((r) => r.kind === 'queue' && r.name !== null).map((r) => r.name as string)
  // From the trigger-kept group counts when their triggers fire (checked in the same snapshot), else a scan.
  const dlqRows = dlqExists
    ? await withGroupCounts(db, (tx, ready) => tx.rows(ready ? dlqCountsFromGroups : dlqCounts, [limit, namedQueues]))
    : []

  const stateOf = (r: (typeof counts)[number]): JobStateCounts => ({
    ready: r.ready,
    scheduled: r.scheduled,
    running: r.running,
    retrying: r.retrying,
    exhausted: r.exhausted,
    oldestReadyAt: r.oldest_ready_at,
    oldestReadyAgeMs: r.oldest_ready_age_ms,
  })
  const emptyState = (): JobStateCounts => ({
    ready: 0,
    scheduled: 0,
    running: 0,
    retrying: 0,
    exhausted: 0,
    oldestReadyAt: null,
    oldestReadyAgeMs: null,
  })

  const dlqTotal = dlqRows.find((r) => r.kind === 'total')
  const dlqByTask = new Map(dlqRows.filter((r) => r.kind === 'task').map((r) => [r.name ?? '', r.entries]))
  const dlqByQueue = new Map(dlqRows.filter((r) => r.kind === 'queue').map((r) => [r.name ?? '', r.entries]))
  const dlqOther = dlqRows.find((r) => r.kind === 'other-queues')

  const total = counts.find((r) => r.kind === 'total')
  const tasks: TaskStatus[] = counts
    .filter((r) => r.kind === 'task')
    .map((r) => ({task: r.name ?? '', ...stateOf(r), dlq: dlqByTask.get(r.name ?? '') ?? 0}))
  for (const [task, entries] of dlqByTask) {
    if (!tasks.some((t) => t.task === task)) tasks.push({task, ...emptyState(), dlq: entries})
  }
  tasks.sort((a, b) => a.task.localeCompare(b.task))

  const queueOwners = new Map(
    listing.locks.filter((l) => l.kind === 'queue').map((l) => [l.queueName ?? '', l.liveness]),
  )
  const queues: QueueStatus[] = counts
    .filter((r) => r.kind === 'queue')
    .sort((a, b) => a.rank - b.rank)
    .map((r) => ({
      queue: r.name,
      ...stateOf(r),
      lockedBy: r.queue_locked_by,
      lockedAt: r.queue_locked_at,
      lockLiveness: r.queue_locked_at ? (queueOwners.get(r.name ?? '') ?? null) : null,
      dlq: dlqByQueue.get(r.name ?? '') ?? 0,
    }))
  // Queues that only have DLQ entries (their jobs are gone) are listed too.
  for (const r of dlqRows.filter((d) => d.kind === 'queue')) {
    if (!queues.some((q) => (q.queue ?? '') === (r.name ?? ''))) {
      queues.push({queue: r.name, ...emptyState(), lockedBy: null, lockedAt: null, lockLiveness: null, dlq: r.entries})
    }
  }
  const other = counts.find((r) => r.kind === 'other-queues')
  const otherQueues =
    other || dlqOther
      ? {
          queues: Math.max(other?.queues ?? 0, dlqOther?.queues ?? 0),
          ...(other ? stateOf(other) : emptyState()),
          dlq: dlqOther?.entries ?? 0,
        }
      : null

  const totals = total ? stateOf(total) : emptyState()
  return {
    schema: db.schema,
    at: listing.now,
    totals: {
      ...totals,
      jobs: totals.ready + totals.scheduled + totals.running + totals.exhausted,
      dlq: dlqExists ? (dlqTotal?.entries ?? 0) : null,
    },
    tasks,
    queues,
    otherQueues,
    serialQueues: total?.queues ?? 0,
    dlq: {exists: dlqExists, entries: dlqTotal?.entries ?? 0, oldestFailedAt: dlqTotal?.oldest_failed_at ?? null},
    locks: lockSummary(listing, options),
    workers: listing.workers,
    durationMs: performance.now() - started,
  }
}

/** Locks by owner liveness, and the unknown owners' locks past the stale timeouts. */
export function lockSummary(
  listing: LockListing,
  options: {staleQueueLockTimeoutMs?: number; staleJobLockTimeoutMs?: number} = {},
): StatusResult['locks'] {
  const counts = {live: zero(), dead: zero(), unknown: zero(), stale: zero()}
  for (const lock of listing.locks) counts[lock.liveness][lock.kind === 'job' ? 'jobs' : 'queues'] += 1
  const plan = planLocks(listing.locks, {
    queueMs: options.staleQueueLockTimeoutMs ?? DEFAULT_STALE_QUEUE_LOCK_TIMEOUT_MS,
    jobMs: options.staleJobLockTimeoutMs ?? DEFAULT_STALE_JOB_LOCK_TIMEOUT_MS,
    force: false,
    reasonOf: () => '',
  })
  for (const lock of plan)
    if (lock.action === 'release' && lock.reason === 'stale-unknown')
      counts.stale[lock.kind === 'job' ? 'jobs' : 'queues'] += 1
  return counts
}

function zero(): LockCounts {
  return {jobs: 0, queues: 0}
}
