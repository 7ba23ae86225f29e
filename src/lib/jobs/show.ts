import type {Database} from '../db.js'
import {listDlq} from '../dlq/entries.js'
import {showDlqEntry, type DlqEntry, type DlqEvent} from '../dlq/entries.js'
import {formatDuration} from '../duration.js'
import {PreconditionError, UsageError} from '../errors.js'
import type {LivenessOptions} from '../locks/owners.js'
import {requireMigrated, type SchemaInspection} from '../schema/inspect.js'
import {getJobRow, jobLineage, serialQueuePosition} from '../sql/jobs-select.js'
import {judgeJobOwners, toJobEntry, type JobEntry, type JobOwner} from './entries.js'

export interface ShowJobOptions {
  id?: string
  jobKey?: string
  inspection?: SchemaInspection
  /** How running jobs' owners are judged (see locks/owners.ts). */
  liveness?: LivenessOptions
}

/** Where a job of a serial queue stands. */
export interface SerialQueueInfo {
  name: string
  /** Waiting jobs of the queue that run before this one (graphile's order: priority, run_at). */
  ahead: number
  /** Waiting jobs in the queue, this one included if it waits. */
  waiting: number
  /** The job holding the queue (running), if any. */
  runningJobId: string | null
  lockedBy: string | null
  lockedAt: Date | null
}

export interface JobDlqHistory {
  /** Set when this job was retried out of the DLQ: the case it belongs to and how often it came back. */
  retriedFrom: {
    caseId: string
    dlqId: string | null
    requeuedCount: number
    failureCount: number
    retriedAt: Date
  } | null
  /** DLQ entries with the same job key (a job key lands in the DLQ at most once at a time). */
  entries: DlqEntry[]
  /** The story of the case: retries and recaptures, oldest first. */
  events: DlqEvent[]
}

export interface ShowJobResult {
  job: JobEntry
  /** The payload exactly as stored (JSON text; the parsed `job.payload` may round big numbers). */
  payloadText: string
  /** Why the job is in its state, for people. */
  why: string
  owner: JobOwner | null
  queue: SerialQueueInfo | null
  /** null when the schema has no DLQ tables. */
  dlq: JobDlqHistory | null
}

/** Everything about one job of the live queue; PreconditionError E_NOT_FOUND (exit 4) when it is not there. */
export async function showJob(db: Database, options: ShowJobOptions): Promise<ShowJobResult> {
  if ((options.id === undefined) === (options.jobKey === undefined))
    throw new UsageError('show a job by its id or by its job key (one of them)', {code: 'E_USAGE'})
  const inspection = options.inspection ?? (await requireMigrated(db))
  const row = await db.maybeOne(getJobRow, [options.id ?? null, options.jobKey ?? null])
  if (!row) {
    const what = options.id !== undefined ? `job ${options.id}` : `a job with job key "${options.jobKey}"`
    throw new PreconditionError(`${what} is not in the jobs table of "${db.schema}"`, {
      code: 'E_NOT_FOUND',
      suggestions: [
        'it may have completed (graphile deletes finished jobs), been removed, or moved to the DLQ',
        'look in the DLQ: backfill dlq list --job-key KEY, and the audit trail: backfill dlq history',
      ],
    })
  }
  const owners = await judgeJobOwners(db, [row], inspection, options.liveness)
  const owner = row.locked_at === null ? null : (owners.get(row.locked_by ?? '') ?? null)
  const job = toJobEntry(row, owner)

  let queue: SerialQueueInfo | null = null
  if (row.job_queue_id !== null && row.queue_name !== null) {
    const position = await db.maybeOne(serialQueuePosition, [row.job_queue_id, row.priority, row.run_at_exact, row.id])
    if (position)
      queue = {
        name: row.queue_name,
        ahead: position.ahead,
        waiting: position.waiting,
        runningJobId: position.running_job_id,
        lockedBy: position.locked_by,
        lockedAt: position.locked_at,
      }
  }

  const relations = inspection.backfill.catalog.relations
  let dlq: JobDlqHistory | null = null
  if (relations.has('backfill_dlq') && relations.has('backfill_dlq_events')) {
    const lineage = relations.has('backfill_dlq_retried_jobs') ? await db.maybeOne(jobLineage, [row.id]) : undefined
    const entries =
      row.key === null
        ? []
        : (await listDlq(db, {selector: {jobKeys: [row.key], limit: 20}, checkUncaptured: false})).entries
    const caseOf = lineage?.case_id ?? entries[0]?.id
    const events = caseOf === undefined ? [] : (await showDlqEntry(db, caseOf).catch(() => undefined))?.history
    dlq = {
      retriedFrom: lineage
        ? {
            caseId: lineage.case_id,
            dlqId: lineage.dlq_id,
            requeuedCount: lineage.requeued_count,
            failureCount: lineage.failure_count,
            retriedAt: lineage.retried_at,
          }
        : null,
      entries,
      events: events ?? [],
    }
  }
  return {job, payloadText: row.payload_text, why: explainState(job, queue, new Date()), owner, queue, dlq}
}

function when(date: Date, now: Date): string {
  const ms = date.getTime() - now.getTime()
  return ms >= 0 ? `in ${formatDuration(ms)}` : `${formatDuration(-ms)} ago`
}

/** One line: why the job is in its state and what happens next. */
export function explainState(job: JobEntry, queue: SerialQueueInfo | null, now: Date): string {
  const attempt = `attempt ${job.attempts} of ${job.maxAttempts}`
  switch (job.state) {
    case 'running': {
      const by = job.lockedBy ?? '(no owner id)'
      const since = job.lockedAt ? `, locked ${when(job.lockedAt, now)}` : ''
      const liveness = job.owner
        ? `; owner ${job.owner.liveness}: ${job.owner.reason}`
        : '; owner liveness unknown (run `locks list`)'
      return `running ${attempt} on ${by}${since}${liveness}`
    }
    case 'exhausted':
      return `no attempts left (${job.attempts} of ${job.maxAttempts} used): graphile will not run it again; dlq capture moves it to the DLQ`
    case 'scheduled':
      return `scheduled: first attempt due ${when(job.runAt, now)} (${job.runAt.toISOString()})`
    case 'retrying':
      return `retrying: attempt ${job.attempts} failed; attempt ${job.attempts + 1} of ${job.maxAttempts} due ${when(job.runAt, now)}`
    case 'blocked': {
      const holder = queue?.runningJobId ? `job ${queue.runningJobId}` : 'a lock'
      return `blocked: due ${when(job.runAt, now)}, but serial queue "${job.queueName}" is held by ${holder} (${job.queueLockedBy ?? 'no owner id'})`
    }
    case 'ready': {
      const ahead = queue && queue.ahead > 0 ? `; ${queue.ahead} job(s) ahead of it in queue "${queue.name}"` : ''
      return `ready: due ${when(job.runAt, now)}; the next free worker that knows task "${job.taskIdentifier}" takes it${ahead}`
    }
  }
}
