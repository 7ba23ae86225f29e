import type {RowOf} from '../sql/statement.js'
import type {addJob} from '../sql/jobs.js'

/** A graphile-worker job as backfill returns it (its _private_jobs row with task and queue names). */
export interface Job {
  /** bigint, as a string (pg returns int8 as text). */
  id: string
  taskIdentifier: string
  /** The serial queue; null for parallel jobs. */
  queueName: string | null
  payload: unknown
  priority: number
  runAt: Date
  attempts: number
  maxAttempts: number
  lastError: string | null
  createdAt: Date
  updatedAt: Date
  key: string | null
  lockedAt: Date | null
  lockedBy: string | null
  /** Incremented each time add_job replaces (or, unsafe_dedupe, re-finds) the keyed job. */
  revision: number
  flags: string[]
}

type JobRow = RowOf<(typeof addJob)['columns']>

/** Converts a row of the jobs statements; undefined for the all-null row of "nothing written/found". */
export function rowToJob(row: JobRow | undefined): Job | undefined {
  if (!row || row.id === null) return undefined
  return {
    id: row.id,
    taskIdentifier: row.task_identifier ?? '',
    queueName: row.queue_name,
    payload: row.payload,
    priority: row.priority ?? 0,
    runAt: row.run_at as Date,
    attempts: row.attempts ?? 0,
    maxAttempts: row.max_attempts ?? 0,
    lastError: row.last_error,
    createdAt: row.created_at as Date,
    updatedAt: row.updated_at as Date,
    key: row.key,
    lockedAt: row.locked_at,
    lockedBy: row.locked_by,
    revision: row.revision ?? 0,
    flags: row.flags && typeof row.flags === 'object' ? Object.keys(row.flags).sort() : [],
  }
}
