import type {Database} from '../db.js'
import {insertDlqAudit} from '../sql/dlq-actions.js'
import {auditContext, type AuditOptions} from './audit.js'
import {captureExhausted, countUncaptured, type CaptureResult, type UncapturedSummary} from './capture.js'

export interface CaptureRunOptions extends AuditOptions {
  /** Report what is waiting; move nothing. */
  dryRun?: boolean
  limit?: number
  batchSize?: number
  signal?: AbortSignal
  onBatch?: (moved: number, total: number) => void
}

export interface CaptureRunResult {
  dryRun: boolean
  /** Shared by this run's audit rows (null for a dry run). */
  run: string | null
  /** Exhausted jobs waiting before the run. */
  waiting: UncapturedSummary
  captured: number
  batches: number
  byTask: Record<string, number>
  /** Jobs that had been retried from the DLQ before and failed again. */
  recaptured: number
  /** Jobs that cannot be moved (a payload the DLQ's jsonb cannot hold); they stay in the jobs table. */
  failed: {jobId: string; error: string}[]
  interrupted: boolean
  durationMs: number
}

/**
 * `dlq capture`: the worker's capture (captureExhausted, the same atomic statement), run on
 * demand for deployments whose workers do not capture, with an audit row per batch written
 * in the batch's transaction.
 */
export async function captureNow(db: Database, options: CaptureRunOptions = {}): Promise<CaptureRunResult> {
  const started = performance.now()
  const waiting = await countUncaptured(db)
  if (options.dryRun) {
    return {
      dryRun: true,
      run: null,
      waiting,
      captured: 0,
      batches: 0,
      byTask: {},
      recaptured: 0,
      failed: [],
      interrupted: false,
      durationMs: performance.now() - started,
    }
  }
  const audit = auditContext(options)
  let batch = 0
  let recaptured = 0
  const result: CaptureResult = await captureExhausted(db, {
    batchSize: options.batchSize,
    limit: options.limit,
    signal: options.signal,
    onBatch: options.onBatch,
    inTransaction: async (tx, jobs) => {
      batch += 1
      const back = jobs.filter((j) => j.recaptured).length
      await tx.rows(insertDlqAudit, [
        'capture',
        jobs.length,
        jobs.map((j) => j.dlqId),
        jobs.map((j) => j.jobId),
        audit.actor.osUser,
        audit.actor.hostname,
        audit.reason,
        options.limit === undefined ? {all: true} : {limit: options.limit},
        {run: audit.run, batch, recaptured: back},
      ])
      recaptured += back
    },
  })
  return {
    dryRun: false,
    run: audit.run,
    waiting,
    captured: result.captured,
    batches: result.batches,
    byTask: result.byTask,
    recaptured,
    failed: result.failed,
    interrupted: options.signal?.aborted === true,
    durationMs: performance.now() - started,
  }
}
