import type {Database} from '../db.js'
import {auditContext, type AuditOptions} from '../dlq/audit.js'
import {UsageError} from '../errors.js'
import {formatDuration} from '../duration.js'
import {requireMigrated, type SchemaInspection} from '../schema/inspect.js'
import {insertDlqAudit} from '../sql/dlq-actions.js'
import {releaseJobLocks, releaseQueueLocks} from '../sql/locks.js'
import {listLocks, type LockEntry, type LockOwner} from './list.js'
import type {LivenessOptions} from './owners.js'

/** The Rust crate's defaults (DEFAULT_STALE_QUEUE_LOCK_TIMEOUT / DEFAULT_STALE_JOB_LOCK_TIMEOUT). */
export const DEFAULT_STALE_QUEUE_LOCK_TIMEOUT_MS = 5 * 60_000
export const DEFAULT_STALE_JOB_LOCK_TIMEOUT_MS = 30 * 60_000

export type ReleaseReason = 'dead-owner' | 'stale-unknown' | 'forced'
export type KeepReason = 'live-owner' | 'unknown-not-stale' | 'queue-in-use' | 'not-confirmed'

export interface PlannedLock extends LockEntry {
  /** skipped: planned for release, but the lock changed before the write (left alone). */
  action: 'release' | 'keep' | 'skipped'
  reason: ReleaseReason | KeepReason
  /** One line for people. */
  why: string
}

export interface LockCounts {
  jobs: number
  queues: number
}

export interface TimeoutWarning {
  level: 'error' | 'warning'
  message: string
}

export interface CleanLocksOptions extends LivenessOptions {
  /** Locks of unknown owners are released once older than this (default 5 min). */
  staleQueueLockTimeoutMs?: number
  /** Default 30 min. Releasing a running job's lock makes it run twice: keep it longer than your longest job. */
  staleJobLockTimeoutMs?: number
  /** Also release live owners' locks and unknown owners' locks regardless of age. */
  force?: boolean
  /** Only consider locks of these owners. */
  owners?: readonly string[]
  dryRun?: boolean
  /**
   * Release only these locks (LockEntry.key from an earlier dry run): what an operator
   * confirmed. Locks planned now but not in this list are kept ('not-confirmed').
   */
  only?: readonly string[]
  /** Who releases, recorded in each released job's last_error (default "backfill locks clean"). */
  actor?: string
  /**
   * Records the release in the audit trail (backfill_dlq_audit, action `locks.clean`, in the
   * same transaction) when that table exists: what an operator does (the CLI, the console).
   * The worker's own periodic cleanup leaves it out.
   */
  audit?: AuditOptions
  /** A fresh inspection of the schema (skips requireMigrated). */
  inspection?: SchemaInspection
}

export interface CleanLocksResult {
  schema: string
  dryRun: boolean
  force: boolean
  owners: LockOwner[]
  timeouts: {queueMs: number; jobMs: number}
  warnings: TimeoutWarning[]
  /** Job locks released (with dryRun: that would be). */
  jobLocks: number
  /** Queue locks released (with dryRun: that would be). */
  queueLocks: number
  released: Record<ReleaseReason, LockCounts>
  kept: Record<KeepReason, LockCounts>
  /** Planned but changed before the write (taken again, owner back, another cleaner was first). */
  skipped: LockCounts
  /** Every lock considered, with the decision (released or kept) and why. */
  locks: PlannedLock[]
  at: Date
  durationMs: number
}

/** The crate's guard rails (WorkerConfig setters): warn, but apply the value. */
export function timeoutWarnings(queueMs: number, jobMs: number): TimeoutWarning[] {
  const warnings: TimeoutWarning[] = []
  if (queueMs < 60_000) {
    warnings.push({
      level: 'warning',
      message: `stale queue lock timeout ${formatDuration(queueMs)} is under 1 minute: serial queues of workers that publish no liveness may be unlocked while their job still runs`,
    })
  }
  if (jobMs < 5 * 60_000) {
    warnings.push({
      level: 'error',
      message: `DANGEROUS: stale job lock timeout ${formatDuration(jobMs)} is under 5 minutes: jobs of workers that publish no liveness and run longer than that are released while running and run twice (DUPLICATE EXECUTION)`,
    })
  } else if (jobMs < 15 * 60_000) {
    warnings.push({
      level: 'warning',
      message: `stale job lock timeout ${formatDuration(jobMs)} is under 15 minutes: jobs of workers that publish no liveness and run longer than that will run twice`,
    })
  }
  return warnings
}

function validTimeout(name: string, value: number | undefined, fallback: number): number {
  const ms = value ?? fallback
  if (!Number.isFinite(ms) || ms < 0) {
    throw new UsageError(`${name} must be a duration of zero or more, got ${String(value)}`, {
      code: 'E_INVALID_TIMEOUT',
      suggestions: ['e.g. 5m, 30m, 2h'],
    })
  }
  return ms
}

const zero = (): LockCounts => ({jobs: 0, queues: 0})

/**
 * Releases locks whose owner is provably gone, at once whatever their age (dead), locks of
 * owners that publish no liveness once older than the stale timeouts (unknown), and never
 * a live owner's lock unless forced. Never deletes or fails a job.
 *
 * A released job keeps its attempts: graphile charged the crashed run when it fetched the
 * job, so a job that kills its worker every time uses up its attempts and ends in the DLQ
 * instead of crashing workers forever (the Rust recovery gives the attempt back, and
 * loops). Like graphile's 4-hour expiry it becomes runnable now (run_at = max(run_at,
 * now)); last_error records why it was released.
 *
 * Safe against concurrent cleaners and running workers: both statements release a lock
 * only if it is still exactly the lock that was judged (owner and locked_at to the
 * microsecond) and its owner has no presence session; rows busy elsewhere are skipped.
 * Jobs and queues are released in one transaction.
 */
export async function cleanLocks(db: Database, options: CleanLocksOptions = {}): Promise<CleanLocksResult> {
  const started = performance.now()
  const queueMs = validTimeout(
    'the stale queue lock timeout',
    options.staleQueueLockTimeoutMs,
    DEFAULT_STALE_QUEUE_LOCK_TIMEOUT_MS,
  )
  const jobMs = validTimeout(
    'the stale job lock timeout',
    options.staleJobLockTimeoutMs,
    DEFAULT_STALE_JOB_LOCK_TIMEOUT_MS,
  )
  const force = options.force ?? false
  const inspection = options.inspection ?? (await requireMigrated(db))
  const listing = await listLocks(db, {...options, inspection})
  const only = options.only ? new Set(options.only) : undefined
  const reasons = new Map(listing.owners.map((o) => [o.owner ?? '', o.reason]))
  const locks = planLocks(listing.locks, {
    queueMs,
    jobMs,
    force,
    only,
    reasonOf: (owner) => reasons.get(owner ?? '') ?? '',
  })

  const result: CleanLocksResult = {
    schema: db.schema,
    dryRun: options.dryRun ?? false,
    force,
    owners: listing.owners,
    timeouts: {queueMs, jobMs},
    warnings: timeoutWarnings(queueMs, jobMs),
    jobLocks: 0,
    queueLocks: 0,
    released: {'dead-owner': zero(), 'stale-unknown': zero(), forced: zero()},
    kept: {'live-owner': zero(), 'unknown-not-stale': zero(), 'queue-in-use': zero(), 'not-confirmed': zero()},
    skipped: zero(),
    locks,
    at: listing.now,
    durationMs: 0,
  }

  const releaseJobs = locks.filter((l) => l.action === 'release' && l.kind === 'job')
  const releaseQueues = locks.filter((l) => l.action === 'release' && l.kind === 'queue')
  if (!result.dryRun && (releaseJobs.length > 0 || releaseQueues.length > 0)) {
    const actor = options.actor ?? 'backfill locks clean'
    const audit = options.audit ? auditContext(options.audit) : undefined
    const {jobIds, queueIds} = await db.transaction(async (tx) => {
      const jobRows =
        releaseJobs.length === 0
          ? []
          : await tx.rows(releaseJobLocks, [
              releaseJobs.map((l) => l.jobId as string),
              releaseJobs.map((l) => l.owner ?? (null as unknown as string)),
              releaseJobs.map((l) => l.lockedAt),
              releaseJobs.map((l) => `Lock released by ${actor}: ${l.why}`),
              force,
            ])
      const queueRows =
        releaseQueues.length === 0
          ? []
          : await tx.rows(releaseQueueLocks, [
              releaseQueues.map((l) => l.queueId as number),
              releaseQueues.map((l) => l.owner ?? (null as unknown as string)),
              releaseQueues.map((l) => l.lockedAt),
              force,
            ])
      const jobIds = new Set(jobRows.map((r) => r.job_id))
      const queueIds = new Set(queueRows.map((r) => r.queue_id))
      if (audit && inspection.backfill.catalog.relations.has('backfill_dlq_audit') && jobIds.size + queueIds.size > 0) {
        await tx.rows(insertDlqAudit, [
          'locks.clean',
          jobIds.size + queueIds.size,
          null,
          [...jobIds],
          audit.actor.osUser,
          audit.actor.hostname,
          audit.reason,
          {owners: options.owners ?? null, force, only: options.only ? 'confirmed' : null},
          {
            run: audit.run,
            queueIds: [...queueIds],
            timeouts: {queueMs, jobMs},
            released: releaseJobs
              .filter((l) => jobIds.has(l.jobId as string))
              .map((l) => ({job: l.jobId, owner: l.owner, reason: l.reason})),
          },
        ])
      }
      return {jobIds, queueIds}
    })
    for (const lock of locks) {
      if (lock.action !== 'release') continue
      const done = lock.kind === 'job' ? jobIds.has(lock.jobId as string) : queueIds.has(lock.queueId as number)
      if (!done) lock.action = 'skipped'
    }
  }

  for (const lock of locks) {
    const field = lock.kind === 'job' ? 'jobs' : 'queues'
    if (lock.action === 'release') result.released[lock.reason as ReleaseReason][field] += 1
    else if (lock.action === 'keep') result.kept[lock.reason as KeepReason][field] += 1
    else result.skipped[field] += 1
  }
  result.jobLocks = Object.values(result.released).reduce((n, c) => n + c.jobs, 0)
  result.queueLocks = Object.values(result.released).reduce((n, c) => n + c.queues, 0)
  result.durationMs = performance.now() - started
  return result
}

export interface PlanOptions {
  queueMs: number
  jobMs: number
  force: boolean
  only?: ReadonlySet<string>
  reasonOf: (owner: string | null) => string
}

/** The decision for every lock (pure). */
export function planLocks(locks: readonly LockEntry[], options: PlanOptions): PlannedLock[] {
  const {queueMs, jobMs, force} = options
  const plan = locks.map((lock): PlannedLock => {
    const owner = lock.owner ?? '(no owner)'
    const timeout = lock.kind === 'job' ? jobMs : queueMs
    if (lock.liveness === 'dead')
      return {
        ...lock,
        action: 'release',
        reason: 'dead-owner',
        why: `owner ${owner} is dead: ${options.reasonOf(lock.owner)}`,
      }
    if (lock.liveness === 'unknown' && lock.ageMs > timeout && lock.kind === 'job') {
      return {
        ...lock,
        action: 'release',
        reason: 'stale-unknown',
        why: `held ${formatDuration(lock.ageMs)} by ${owner}, which publishes no liveness (stale job lock timeout ${formatDuration(timeout)})`,
      }
    }
    if (force)
      return {
        ...lock,
        action: 'release',
        reason: 'forced',
        why: `forced (owner ${owner} is ${lock.liveness}: ${options.reasonOf(lock.owner)})`,
      }
    if (lock.liveness === 'live')
      return {
        ...lock,
        action: 'keep',
        reason: 'live-owner',
        why: `owner ${owner} is live: ${options.reasonOf(lock.owner)}`,
      }
    if (lock.kind === 'queue' && lock.ageMs > timeout) {
      // Reconsidered below, once we know which of the owner's job locks stay.
      return {
        ...lock,
        action: 'release',
        reason: 'stale-unknown',
        why: `held ${formatDuration(lock.ageMs)} by ${owner}, which publishes no liveness (stale queue lock timeout ${formatDuration(timeout)})`,
      }
    }
    return {
      ...lock,
      action: 'keep',
      reason: 'unknown-not-stale',
      why: `held ${formatDuration(lock.ageMs)} by ${owner}, which publishes no liveness; not older than ${formatDuration(timeout)}`,
    }
  })

  if (options.only) {
    for (const lock of plan) {
      if (lock.action === 'release' && !options.only.has(lock.key)) {
        lock.action = 'keep'
        lock.reason = 'not-confirmed'
        lock.why = `not in the confirmed list (${lock.why})`
      }
    }
  }

  // A serial queue stays locked while its owner's job in it keeps running: releasing the
  // queue lock would let the queue's next job run beside it. (The release statement checks
  // the same again at write time.)
  const keptJobQueues = new Set(
    plan
      .filter((l) => l.kind === 'job' && l.action === 'keep' && l.queueId !== null)
      .map((l) => `${l.queueId}:${l.owner ?? ''}`),
  )
  for (const lock of plan) {
    if (
      lock.kind === 'queue' &&
      lock.action === 'release' &&
      keptJobQueues.has(`${lock.queueId}:${lock.owner ?? ''}`)
    ) {
      lock.action = 'keep'
      lock.reason = 'queue-in-use'
      lock.why = `its owner ${lock.owner ?? '(no owner)'} still runs a job of this queue whose lock is kept`
    }
  }
  return plan
}
