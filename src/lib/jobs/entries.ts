import type {Job} from '../client/job.js'
import type {Database} from '../db.js'
import {listLocks} from '../locks/list.js'
import type {Liveness, LivenessOptions, OwnerFamily} from '../locks/owners.js'
import type {SchemaInspection} from '../schema/inspect.js'
import type {JOB_ROW_COLUMNS} from '../sql/jobs-select.js'
import type {RowOf} from '../sql/statement.js'
import type {JobState} from './states.js'

/** Who holds a running job, and whether that worker is provably alive (src/lib/locks). */
export interface JobOwner {
  id: string | null
  family: OwnerFamily
  liveness: Liveness
  /** What the verdict rests on, one line. */
  reason: string
}

/** A job of the live queue as `jobs list/show` return it: graphile's row, its state, its lock owner. */
export interface JobEntry extends Job {
  /** The payload exactly as stored (`payload` is parsed with JSON.parse and may round numbers). */
  payloadText: string
  state: JobState
  /** Who holds the job's serial queue (blocked jobs wait for it), null when unlocked or parallel. */
  queueLockedBy: string | null
  /** Running jobs: the lock owner and its liveness; null otherwise. */
  owner: JobOwner | null
}

export type JobRowData = RowOf<typeof JOB_ROW_COLUMNS>

export function toJobEntry(row: JobRowData, owner: JobOwner | null = null): JobEntry {
  return {
    id: row.id,
    taskIdentifier: row.task_identifier,
    queueName: row.queue_name,
    state: row.state as JobState,
    payload: JSON.parse(row.payload) as unknown,
    payloadText: row.payload,
    priority: row.priority,
    runAt: row.run_at,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    lastError: row.last_error,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    key: row.key,
    lockedAt: row.locked_at,
    lockedBy: row.locked_by,
    revision: row.revision,
    flags: row.flags && typeof row.flags === 'object' ? Object.keys(row.flags).sort() : [],
    queueLockedBy: row.queue_locked_at === null ? null : row.queue_locked_by,
    owner,
  }
}

/**
 * The liveness of the owners of these running jobs, judged as `locks list` judges them
 * (presence sessions, heartbeats). Keyed by locked_by ('' for a lock without an owner id).
 */
export async function judgeJobOwners(
  db: Database,
  rows: readonly JobRowData[],
  inspection: SchemaInspection,
  liveness: LivenessOptions = {},
): Promise<Map<string, JobOwner>> {
  const owners = [...new Set(rows.filter((r) => r.locked_at !== null).map((r) => r.locked_by ?? ''))]
  const judged = new Map<string, JobOwner>()
  if (owners.length === 0) return judged
  const listing = await listLocks(db, {...liveness, owners, inspection, recentWorkersMs: 0})
  for (const owner of listing.owners)
    judged.set(owner.owner ?? '', {
      id: owner.owner,
      family: owner.family,
      liveness: owner.liveness,
      reason: owner.reason,
    })
  return judged
}

/** Rows to entries, with the owners of the running ones judged. */
export async function toJobEntries(
  db: Database,
  rows: readonly JobRowData[],
  inspection: SchemaInspection,
  liveness: LivenessOptions = {},
): Promise<JobEntry[]> {
  const owners = await judgeJobOwners(db, rows, inspection, liveness)
  return rows.map((row) => toJobEntry(row, row.locked_at === null ? null : (owners.get(row.locked_by ?? '') ?? null)))
}
