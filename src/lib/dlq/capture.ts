import type {Database} from '../db.js'
import {PermissionError} from '../errors.js'
import {Fingerprinter} from './fingerprint.js'
import {storeEntryFingerprints} from './fingerprint-store.js'
import {withDeadlockRetry} from './scan.js'
import {
  captureLockedJobs,
  type CaptureRow,
  countExhaustedJobs,
  exhaustedJobIds,
  type LockedJob,
  lockExhaustedJob,
  lockExhaustedJobs,
  pruneRetriedJobLineage,
} from '../sql/dlq-capture.js'

export interface CaptureOptions {
  /** Jobs per batch (each batch is one transaction: lock, fingerprint, one atomic move). */
  batchSize?: number
  /** Stop after this many jobs in total (default: until none are left). */
  limit?: number
  /** Checked between batches; a batch in progress always completes or rolls back. */
  signal?: AbortSignal
  onBatch?: (moved: number, total: number) => void
  /**
   * When set, each batch runs in a transaction and this is called inside it with the batch's
   * jobs (e.g. to write an audit row that commits or rolls back with the move).
   */
  inTransaction?: (tx: Database, jobs: CapturedJob[]) => Promise<void>
  /**
   * Job ids known to be uncapturable (a payload the DLQ's jsonb cannot hold); they are
   * skipped, and ones found now are added. Pass the same set on every run (the worker does).
   */
  exclude?: Set<string>
}

export interface UncapturableJob {
  jobId: string
  error: string
}

export interface CapturedJob {
  dlqId: string
  jobId: string
  taskIdentifier: string
  /** '' for parallel jobs, the serial queue name otherwise. */
  queueName: string
  /** The job had been retried from the DLQ before. */
  recaptured: boolean
}

export interface CaptureResult {
  captured: number
  batches: number
  /** Per task, for logs and metrics (bounded by the number of task identifiers). */
  byTask: Record<string, number>
  /** The first jobs moved (at most 100), for logs. */
  sample: CapturedJob[]
  /** Jobs found this run that cannot be moved; they stay in the jobs table. */
  failed: UncapturableJob[]
  durationMs: number
}

export const DEFAULT_CAPTURE_BATCH = 2000

/**
 * Moves every exhausted, unlocked job into the DLQ, batch by batch. Each batch is one
 * transaction: lock the jobs (skip locked), fingerprint their errors here, then a single
 * statement moves them, writing each entry once with its fingerprint. A crash or a lost
 * connection leaves each job either where it was or in the DLQ. Safe to run from several
 * processes at once (skip locked).
 */
export async function captureExhausted(db: Database, options: CaptureOptions = {}): Promise<CaptureResult> {
  const started = performance.now()
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_CAPTURE_BATCH)
  const exclude = options.exclude ?? new Set<string>()
  const result: CaptureResult = {captured: 0, batches: 0, byTask: {}, sample: [], failed: [], durationMs: 0}
  const fingerprinter = new Fingerprinter()
  // The lock, the move (entries with their fingerprints) and the caller's hook commit together.
  // Run again if chosen as a deadlock victim: the count triggers lock each touched group's
  // row, and another DLQ writer (purge, retry, the crate) may take two groups the other way round.
  const move = async (lock: (tx: Database) => Promise<LockedJob[]>): Promise<{locked: number; rows: CaptureRow[]}> =>
    withDeadlockRetry(() =>
      db.transaction(async (tx) => {
        const locked = await lock(tx)
        if (locked.length === 0) return {locked: 0, rows: []}
        const lines = new Map(locked.map((j) => [j.id, j.error_line]))
        const rows = await tx.rows(captureLockedJobs, [
          locked.map((j) => j.id),
          locked.map((j) => fingerprinter.of(j.task_identifier, j.error_line).fingerprint),
        ])
        // This transaction holds every locked job, so each one moves unless the role's DELETE
        // cannot see it (a row-level security policy that grants select and update only) or a
        // trigger drops a row: refuse (roll back) rather than report fewer, or lose a job.
        if (rows.length !== locked.length) throw cannotMove(tx, locked.length, rows.length)
        // The line the entry reads back is the one fingerprinted (jobErrorLineSql mirrors
        // errorLineSql); should they ever differ, the entry's fingerprint is rewritten from its own.
        const differing = rows.filter((r) => lines.get(r.job_id) !== r.error_line)
        if (differing.length > 0) await storeEntryFingerprints(tx, differing, fingerprinter)
        await options.inTransaction?.(tx, rows.map(toCapturedJob))
        return {locked: locked.length, rows}
      }),
    )
  for (;;) {
    if (options.signal?.aborted) break
    const want = options.limit === undefined ? batchSize : Math.min(batchSize, options.limit - result.captured)
    if (want <= 0) break
    let rows: CaptureRow[]
    let exhausted: boolean
    try {
      const batch = await move((tx) => tx.rows(lockExhaustedJobs, [want, [...exclude]]))
      rows = batch.rows
      // Fewer than asked: nothing left that we could lock (others may hold the rest).
      exhausted = batch.locked < want
    } catch (error) {
      if (!isDataError(error)) throw error
      // One row of this batch cannot be stored (json that jsonb rejects, e.g. \u0000): move
      // the batch job by job, so one bad payload never blocks every other capture.
      rows = []
      const ids = await db.rows(exhaustedJobIds, [want, [...exclude]])
      for (const {id} of ids) {
        try {
          rows.push(...(await move((tx) => tx.rows(lockExhaustedJob, [id]))).rows)
        } catch (single) {
          if (!isDataError(single)) throw single
          exclude.add(id)
          result.failed.push({jobId: id, error: (single as Error).message})
        }
      }
      exhausted = ids.length < want
    }
    result.batches += 1
    result.captured += rows.length
    for (const row of rows) {
      result.byTask[row.task_identifier] = (result.byTask[row.task_identifier] ?? 0) + 1
      if (result.sample.length < 100) result.sample.push(toCapturedJob(row))
    }
    options.onBatch?.(rows.length, result.captured)
    if (exhausted) break
  }
  if (result.captured > 0) await db.exec(pruneRetriedJobLineage, [])
  result.durationMs = performance.now() - started
  return result
}

function cannotMove(db: Database, locked: number, moved: number): PermissionError {
  return new PermissionError(
    `capture locked ${locked} exhausted jobs in schema "${db.schema}" but could move only ${moved}: a row-level security policy on _private_jobs hides them from this role's DELETE (or a trigger skipped rows); nothing was moved`,
    {
      suggestions: [
        "run backfill as the owner of graphile-worker's tables, or give this role a DELETE policy on _private_jobs",
      ],
      details: {locked, moved},
    },
  )
}

/** PostgreSQL's data exceptions (class 22), e.g. 22P05 for \u0000 in jsonb: the row, not the database. */
function isDataError(error: unknown): boolean {
  const sqlstate = (error as {details?: {sqlstate?: unknown}}).details?.sqlstate
  return typeof sqlstate === 'string' && sqlstate.startsWith('22')
}

function toCapturedJob(row: {
  dlq_id: string
  job_id: string
  task_identifier: string
  queue_name: string
  recaptured: boolean
}): CapturedJob {
  return {
    dlqId: row.dlq_id,
    jobId: row.job_id,
    taskIdentifier: row.task_identifier,
    queueName: row.queue_name,
    recaptured: row.recaptured,
  }
}

export interface UncapturedSummary {
  total: number
  groups: {taskIdentifier: string; queueName: string; count: number; oldest: Date | null}[]
}

/** Exhausted jobs still in the jobs table (read-only). */
export async function countUncaptured(db: Database): Promise<UncapturedSummary> {
  const rows = await db.rows(countExhaustedJobs, [])
  return {
    total: rows.reduce((sum, r) => sum + r.count, 0),
    groups: rows.map((r) => ({
      taskIdentifier: r.task_identifier,
      queueName: r.queue_name,
      count: r.count,
      oldest: r.oldest,
    })),
  }
}
