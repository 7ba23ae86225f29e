import {SMALLINT_MAX, SMALLINT_MIN} from '../client/spec.js'
import type {Database} from '../db.js'
import {auditContext, type AuditAction, type AuditOptions} from '../dlq/audit.js'
import {withDeadlockRetry} from '../dlq/scan.js'
import {InternalError, NotMigratedError, UsageError} from '../errors.js'
import {storeEntryFingerprints} from '../dlq/fingerprint-store.js'
import {requireMigrated, type SchemaInspection} from '../schema/inspect.js'
import {insertDlqAudit} from '../sql/dlq-actions.js'
import {
  captureFailedJobs,
  classifySkipped,
  failJobsBatch,
  moveJobsToDlqBatch,
  removeJobsBatch,
  rescheduleJobsBatch,
  runJobsNowBatch,
} from '../sql/jobs-actions.js'
import {jobRowsById, jobSelectionRows} from '../sql/jobs-select.js'
import {taskAndQueueNames} from '../sql/jobs.js'
import {sleep} from '../sleep.js'
import {databaseNow} from '../sql/schema.js'
import {toJobEntries, type JobEntry} from './entries.js'
import {describeJobSelector, jobSelectorParams, type JobSelector} from './selector.js'
import type {JobState} from './states.js'

/**
 * Acting on jobs of the live queue, in two steps so that what changes is what was confirmed:
 *
 * 1. selectJobs() reads the selection as of now: every matching job that the action may
 *    change, with the version of the row it saw (updated_at, revision, attempts), the count
 *    per task and a sample. This is the dry run, and what a confirmation prompt shows.
 * 2. performJobAction() changes exactly those jobs, batch by batch (one short transaction
 *    each, with its audit row). A job is changed only if it is still as it was seen, not
 *    running, still eligible, and not held by another transaction; every other job is left
 *    alone and reported with the reason. So jobs enqueued after the confirmation are never
 *    touched, and two operators running the same action at once change each job once (the
 *    second finds it changed or gone). Graphile's own functions make the changes.
 *
 * removeJobs(), failJobs(), runJobsNow() and rescheduleJobs() do both steps at once.
 */

export const JOB_ACTIONS = ['remove', 'fail', 'run_now', 'reschedule'] as const
export type JobAction = (typeof JOB_ACTIONS)[number]

export interface RemoveSpec {
  action: 'remove'
  /** Move the jobs into backfill_dlq (the capture's atomic move) instead of deleting them. */
  toDlq?: boolean
}

export interface FailSpec {
  action: 'fail'
  /** last_error written by permanently_fail_jobs (default: the audit reason, else graphile's "Manually marked as failed"). */
  message?: string
  /** Move the failed jobs into the DLQ at once (same transaction) instead of waiting for capture. */
  capture?: boolean
}

export interface RunNowSpec {
  action: 'run_now'
  /** Also set attempts to 0 (and so revive exhausted jobs). */
  resetAttempts?: boolean
}

export interface RescheduleSpec {
  action: 'reschedule'
  runAt?: Date
  /** run_at = the moment of selection + this many ms (the database's clock). */
  delayMs?: number
  priority?: number
  maxAttempts?: number
  resetAttempts?: boolean
}

export type JobActionSpec = RemoveSpec | FailSpec | RunNowSpec | RescheduleSpec

export interface SelectJobsOptions {
  selector: JobSelector
  /** Jobs shown in the sample (default 10). */
  sampleSize?: number
  inspection?: SchemaInspection
}

export interface TaskCount {
  taskIdentifier: string
  count: number
}

/** A confirmed selection: what an action will change. */
export interface JobSelection {
  spec: JobActionSpec
  selector: JobSelector
  /** The database's clock when the selection was read. */
  takenAt: Date
  /** Jobs matching the selector. */
  matched: number
  /** Jobs the action will change (at most selector.limit). */
  count: number
  /** Per task, most first. */
  byTask: TaskCount[]
  /** Matching jobs the action will not touch, by state (running jobs; ones the action does not apply to). */
  excluded: Partial<Record<JobState, number>>
  /** The first jobs (id order) the action will change. */
  sample: JobEntry[]
}

export type SkipReason = 'running' | 'changed' | 'gone' | 'not_applicable' | 'busy'

export interface ActedJob {
  jobId: string
  taskIdentifier: string
  /** The DLQ entry the job became (remove --to-dlq, fail --capture). */
  dlqId: string | null
}

export interface SkippedJob {
  jobId: string
  reason: SkipReason
  /** The job's state when it was skipped (null when gone). */
  state: JobState | null
}

export interface JobActionProgress {
  batch: number
  done: number
  skipped: number
  total: number
}

export interface PerformOptions extends AuditOptions {
  selection: JobSelection
  /** Jobs per transaction (default 2000). */
  batchSize?: number
  /** Checked between batches: a batch always commits or rolls back as a whole. */
  signal?: AbortSignal
  onBatch?: (progress: JobActionProgress) => void
}

export interface JobActionResult {
  /** Shared by this run's audit rows (backfill dlq history). */
  run: string
  action: JobAction
  /** Jobs changed (removed, moved, failed, rescheduled). */
  done: number
  /** Of those, jobs that went into the DLQ (remove --to-dlq, fail --capture). */
  movedToDlq: number
  /** Selected jobs left alone, by reason. */
  skipped: Record<SkipReason, number>
  /** Jobs changed per task. */
  byTask: Record<string, number>
  /** The first jobs changed (at most 100). */
  sample: ActedJob[]
  /** The first jobs left alone (at most 100). */
  skippedSample: SkippedJob[]
  batches: number
  /** Stopped early by the signal (after a complete batch); the rest is unchanged. */
  interrupted: boolean
  durationMs: number
}

export const DEFAULT_JOB_ACTION_BATCH = 2000
export const MAX_JOB_ACTION_BATCH = 50_000
const SAMPLE_LIMIT = 100
/** Rounds in which jobs another transaction held are tried again before they count as busy. */
const BUSY_ROUNDS = 3
const BUSY_PAUSE_MS = 200

/** The action's name in the audit trail (backfill_dlq_audit.action). */
/** An action that changed nothing (also the answer to an empty selection). */
export function emptyJobActionResult(spec: JobActionSpec): JobActionResult {
  return {
    run: '',
    action: spec.action,
    done: 0,
    movedToDlq: 0,
    skipped: {running: 0, changed: 0, gone: 0, not_applicable: 0, busy: 0},
    byTask: {},
    sample: [],
    skippedSample: [],
    batches: 0,
    interrupted: false,
    durationMs: 0,
  }
}

export function auditAction(spec: JobActionSpec): AuditAction {
  switch (spec.action) {
    case 'remove':
      return spec.toDlq ? 'jobs.move-to-dlq' : 'jobs.remove'
    case 'fail':
      return 'jobs.fail'
    case 'run_now':
      return 'jobs.run-now'
    case 'reschedule':
      return 'jobs.reschedule'
  }
}

interface Selected {
  ids: string[]
  seenAt: string[]
  seenVersion: string[]
  taskIds: number[]
  taskNames: Map<number, string>
}

/** The rows behind each selection, kept out of its enumerable fields (JSON of a selection stays small). */
const selectedJobs = new WeakMap<JobSelection, Selected>()

/**
 * Refuses what the action cannot do here (exit 4, nothing changed): graphile-worker missing,
 * the audit table missing, the DLQ missing for a move, graphile's admin function missing
 * (a schema built by the Rust port at revisions 11-15 has no permanently_fail_jobs).
 */
export async function requireJobActions(db: Database, spec: JobActionSpec): Promise<SchemaInspection> {
  const toDlq = (spec.action === 'remove' && spec.toDlq) || (spec.action === 'fail' && spec.capture)
  const inspection = await requireMigrated(db, {dlq: Boolean(toDlq)})
  const flag = db.schema === 'graphile_worker' ? '' : ` --schema ${db.schema}`
  if (!inspection.backfill.catalog.relations.has('backfill_dlq_audit'))
    throw new NotMigratedError(`the audit table "${db.schema}".backfill_dlq_audit does not exist`, {
      suggestions: [`job actions are audited there: run backfill migrate${flag} (or backfill init-dlq${flag})`],
    })
  const fn = {
    remove: 'complete_jobs',
    fail: 'permanently_fail_jobs',
    run_now: 'reschedule_jobs',
    reschedule: 'reschedule_jobs',
  }[spec.action]
  if (!inspection.graphile.functions.includes(fn))
    throw new NotMigratedError(`graphile-worker's ${fn}() is missing from schema "${db.schema}"`, {
      suggestions: [`upgrade the schema: backfill migrate${flag} (see backfill schema status)`],
    })
  return inspection
}

function validateSpec(spec: JobActionSpec): void {
  if (spec.action !== 'reschedule') return
  if (
    spec.runAt === undefined &&
    spec.delayMs === undefined &&
    spec.priority === undefined &&
    spec.maxAttempts === undefined &&
    !spec.resetAttempts
  )
    throw new UsageError('reschedule needs something to change: a run-at time, a delay, a priority or max attempts', {
      code: 'E_USAGE',
    })
  if (spec.runAt !== undefined && spec.delayMs !== undefined)
    throw new UsageError('give a run-at time or a delay, not both', {code: 'E_USAGE'})
  if (spec.runAt !== undefined && Number.isNaN(spec.runAt.getTime()))
    throw new UsageError('invalid run-at time', {code: 'E_BAD_TIME'})
  if (spec.delayMs !== undefined && (!Number.isFinite(spec.delayMs) || spec.delayMs < 0))
    throw new UsageError(`invalid delay ${spec.delayMs}: expected a duration`, {code: 'E_INVALID_DURATION'})
  if (
    spec.priority !== undefined &&
    (!Number.isInteger(spec.priority) || spec.priority < SMALLINT_MIN || spec.priority > SMALLINT_MAX)
  )
    throw new UsageError(`invalid priority ${spec.priority}: expected an integer from -32768 to 32767`, {
      code: 'E_BAD_PRIORITY',
    })
  if (
    spec.maxAttempts !== undefined &&
    (!Number.isInteger(spec.maxAttempts) || spec.maxAttempts < 1 || spec.maxAttempts > SMALLINT_MAX)
  )
    throw new UsageError(`invalid max attempts ${spec.maxAttempts}: expected an integer from 1 to 32767`, {
      code: 'E_BAD_MAX_ATTEMPTS',
    })
}

function resetOf(spec: JobActionSpec): boolean {
  return (spec.action === 'run_now' || spec.action === 'reschedule') && Boolean(spec.resetAttempts)
}

function maxAttemptsOf(spec: JobActionSpec): number | null {
  return spec.action === 'reschedule' ? (spec.maxAttempts ?? null) : null
}

/**
 * The selection an action would change, as of now (read-only): the dry run, and what a
 * confirmation shows. Pass it to performJobAction() to change exactly these jobs.
 */
export async function selectJobs(db: Database, options: SelectJobsOptions & JobActionSpec): Promise<JobSelection> {
  const {selector, sampleSize = 10} = options
  const spec = specOf(options)
  validateSpec(spec)
  const inspection = options.inspection ?? (await requireJobActions(db, spec))
  const limit = selector.limit ?? Number.POSITIVE_INFINITY
  const selected: Selected = {ids: [], seenAt: [], seenVersion: [], taskIds: [], taskNames: new Map()}
  const excluded: Partial<Record<JobState, number>> = {}
  const perTask = new Map<number, number>()
  let matched = 0
  let takenAt = new Date()
  // One snapshot for the whole read: the count, the versions and the sample agree.
  await db.transaction(async (tx) => {
    await tx.execScript('set transaction isolation level repeatable read, read only')
    takenAt = (await tx.one(databaseNow, [])).now
    await tx.cursor(
      jobSelectionRows,
      [...jobSelectorParams(selector), spec.action, resetOf(spec), maxAttemptsOf(spec), null],
      10_000,
      (rows) => {
        for (const row of rows) {
          matched += 1
          if (!row.applicable || selected.ids.length >= limit) {
            if (!row.applicable) excluded[row.state as JobState] = (excluded[row.state as JobState] ?? 0) + 1
            continue
          }
          selected.ids.push(row.id)
          selected.seenAt.push(row.seen_at)
          selected.seenVersion.push(row.seen_version)
          selected.taskIds.push(row.task_id)
          perTask.set(row.task_id, (perTask.get(row.task_id) ?? 0) + 1)
        }
      },
    )
  })
  const taskIds = [...perTask.keys()]
  if (taskIds.length > 0)
    for (const row of await db.rows(taskAndQueueNames, [taskIds, []])) selected.taskNames.set(row.id, row.name)
  const nameOf = (id: number): string => selected.taskNames.get(id) ?? `(unknown task ${id})`
  const sampleIds = selected.ids.slice(0, sampleSize)
  const sample =
    sampleIds.length === 0 ? [] : await toJobEntries(db, await db.rows(jobRowsById, [sampleIds]), inspection)
  const resolved: JobActionSpec =
    spec.action === 'reschedule' && spec.delayMs !== undefined
      ? {...spec, runAt: new Date(takenAt.getTime() + spec.delayMs), delayMs: undefined}
      : spec
  const selection: JobSelection = {
    spec: withoutUndefined(resolved),
    selector,
    takenAt,
    matched,
    count: selected.ids.length,
    byTask: [...perTask.entries()]
      .map(([id, count]) => ({taskIdentifier: nameOf(id), count}))
      .sort((a, b) => b.count - a.count || a.taskIdentifier.localeCompare(b.taskIdentifier)),
    excluded,
    sample,
  }
  selectedJobs.set(selection, selected)
  return selection
}

function specOf(options: JobActionSpec): JobActionSpec {
  switch (options.action) {
    case 'remove':
      return {action: 'remove', toDlq: options.toDlq}
    case 'fail':
      return {action: 'fail', message: options.message, capture: options.capture}
    case 'run_now':
      return {action: 'run_now', resetAttempts: options.resetAttempts}
    case 'reschedule':
      return {
        action: 'reschedule',
        runAt: options.runAt,
        delayMs: options.delayMs,
        priority: options.priority,
        maxAttempts: options.maxAttempts,
        resetAttempts: options.resetAttempts,
      }
    default:
      throw new UsageError(`unknown job action "${(options as {action: string}).action}"`, {code: 'E_USAGE'})
  }
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T
}

interface Wanted {
  ids: string[]
  seenAt: string[]
  seenVersion: string[]
}

/**
 * Changes the jobs of a confirmed selection (see the module comment): batch by batch, each
 * batch one transaction holding the change and its audit row. Jobs another transaction held
 * are tried again at the end (a few rounds) before they count as busy.
 */
export async function performJobAction(db: Database, options: PerformOptions): Promise<JobActionResult> {
  const {selection} = options
  const selected = selectedJobs.get(selection)
  if (!selected)
    throw new UsageError('this selection was not made by selectJobs() in this process', {
      code: 'E_USAGE',
      suggestions: ['call selectJobs() and pass its result unchanged'],
    })
  const batchSize = options.batchSize ?? DEFAULT_JOB_ACTION_BATCH
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_JOB_ACTION_BATCH)
    throw new UsageError(`invalid batch size ${batchSize}: expected 1 to ${MAX_JOB_ACTION_BATCH}`, {code: 'E_USAGE'})
  const {spec} = selection
  const started = performance.now()
  const audit = auditContext(options)
  const description = describeJobSelector(selection.selector)
  const result: JobActionResult = {...emptyJobActionResult(spec), run: audit.run}
  if (selected.ids.length === 0) return result
  const nameOf = (index: number): string => {
    const id = selected.taskIds[index] as number
    return selected.taskNames.get(id) ?? `(unknown task ${id})`
  }
  const indexOf = new Map<string, number>()
  selected.ids.forEach((id, i) => indexOf.set(id, i))
  const reasonText = audit.reason ? `: ${audit.reason}` : ''
  let batchNumber = 0

  const runBatch = async (wanted: Wanted, final: boolean): Promise<Wanted> => {
    batchNumber += 1
    const step = await withDeadlockRetry(() =>
      db.transaction(async (tx) => {
        const done = await act(tx, spec, wanted, reasonText, audit.reason)
        const doneIds = new Set(done.map((d) => d.jobId))
        const rest = pick(wanted, (id) => !doneIds.has(id))
        const classified =
          rest.ids.length === 0
            ? []
            : await tx.rows(classifySkipped, [
                rest.ids,
                rest.seenAt,
                rest.seenVersion,
                spec.action,
                resetOf(spec),
                maxAttemptsOf(spec),
              ])
        const skipped = classified.filter((c) => final || c.outcome !== 'busy')
        const busy = new Set(classified.filter((c) => !final && c.outcome === 'busy').map((c) => c.id))
        if (done.length + skipped.length > 0) {
          const dlqIds = done.map((d) => d.dlqId).filter((id): id is string => id !== null)
          await tx.rows(insertDlqAudit, [
            auditAction(spec),
            done.length,
            dlqIds.length > 0 ? dlqIds : null,
            done.map((d) => d.jobId),
            audit.actor.osUser,
            audit.actor.hostname,
            audit.reason,
            description,
            {
              run: audit.run,
              batch: batchNumber,
              options: auditOptions(spec),
              skipped: skipped.map((s) => ({id: s.id, reason: s.outcome})),
            },
          ])
        }
        return {done, skipped, busy}
      }),
    )
    if (step.done.length + step.skipped.length > 0) result.batches += 1
    for (const d of step.done) {
      const task = nameOf(indexOf.get(d.jobId) ?? 0)
      result.done += 1
      if (d.dlqId !== null) result.movedToDlq += 1
      result.byTask[task] = (result.byTask[task] ?? 0) + 1
      if (result.sample.length < SAMPLE_LIMIT)
        result.sample.push({jobId: d.jobId, taskIdentifier: task, dlqId: d.dlqId})
    }
    for (const s of step.skipped) {
      const reason = s.outcome as SkipReason
      result.skipped[reason] += 1
      if (result.skippedSample.length < SAMPLE_LIMIT)
        result.skippedSample.push({jobId: s.id, reason, state: (s.state as JobState | null) ?? null})
    }
    options.onBatch?.({
      batch: batchNumber,
      done: result.done,
      skipped: Object.values(result.skipped).reduce((a, b) => a + b, 0),
      total: selection.count,
    })
    return pick(wanted, (id) => step.busy.has(id))
  }

  let busy: Wanted = {ids: [], seenAt: [], seenVersion: []}
  for (let start = 0; start < selected.ids.length; start += batchSize) {
    if (options.signal?.aborted) {
      result.interrupted = true
      break
    }
    const end = Math.min(start + batchSize, selected.ids.length)
    const left = await runBatch(
      {
        ids: selected.ids.slice(start, end),
        seenAt: selected.seenAt.slice(start, end),
        seenVersion: selected.seenVersion.slice(start, end),
      },
      false,
    )
    busy = concat(busy, left)
  }
  // Jobs another transaction held: usually another operator's batch or a worker's fetch, which
  // has committed by now (the job is then changed, gone or running); otherwise try again.
  for (let round = 1; round <= BUSY_ROUNDS && busy.ids.length > 0 && !result.interrupted; round++) {
    await sleep(BUSY_PAUSE_MS)
    let next: Wanted = {ids: [], seenAt: [], seenVersion: []}
    for (let start = 0; start < busy.ids.length; start += batchSize) {
      const end = Math.min(start + batchSize, busy.ids.length)
      const chunk = {
        ids: busy.ids.slice(start, end),
        seenAt: busy.seenAt.slice(start, end),
        seenVersion: busy.seenVersion.slice(start, end),
      }
      next = concat(next, await runBatch(chunk, round === BUSY_ROUNDS))
    }
    busy = next
  }
  result.durationMs = performance.now() - started
  return result
}

function pick(wanted: Wanted, keep: (id: string) => boolean): Wanted {
  const out: Wanted = {ids: [], seenAt: [], seenVersion: []}
  wanted.ids.forEach((id, i) => {
    if (!keep(id)) return
    out.ids.push(id)
    out.seenAt.push(wanted.seenAt[i] as string)
    out.seenVersion.push(wanted.seenVersion[i] as string)
  })
  return out
}

function concat(a: Wanted, b: Wanted): Wanted {
  if (b.ids.length === 0) return a
  return {
    ids: [...a.ids, ...b.ids],
    seenAt: [...a.seenAt, ...b.seenAt],
    seenVersion: [...a.seenVersion, ...b.seenVersion],
  }
}

function auditOptions(spec: JobActionSpec): Record<string, unknown> {
  const {action: _action, ...rest} = spec
  return withoutUndefined({...rest, runAt: spec.action === 'reschedule' ? spec.runAt?.toISOString() : undefined})
}

interface Done {
  jobId: string
  dlqId: string | null
}

/** One batch of the action (the caller's transaction): the jobs changed. */
async function act(
  tx: Database,
  spec: JobActionSpec,
  wanted: Wanted,
  reasonText: string,
  reason: string | null,
): Promise<Done[]> {
  const w = [wanted.ids, wanted.seenAt, wanted.seenVersion] as const
  switch (spec.action) {
    case 'remove': {
      if (!spec.toDlq) return (await tx.rows(removeJobsBatch, [...w])).map((r) => ({jobId: r.id, dlqId: null}))
      const moved = await tx.rows(moveJobsToDlqBatch, [...w, `Removed by an operator${reasonText}`])
      await storeEntryFingerprints(tx, moved)
      return moved.map((r) => ({jobId: r.job_id, dlqId: r.dlq_id}))
    }
    case 'fail': {
      const failed = await tx.rows(failJobsBatch, [...w, spec.message ?? reason])
      if (!spec.capture || failed.length === 0) return failed.map((r) => ({jobId: r.id, dlqId: null}))
      const captured = await tx.rows(captureFailedJobs, [failed.map((r) => r.id), `Failed by an operator${reasonText}`])
      // This transaction holds every failed job (it just updated them): each one must move.
      if (captured.length !== failed.length)
        throw new InternalError(`fail --capture moved ${captured.length} of the ${failed.length} jobs it failed`)
      await storeEntryFingerprints(tx, captured)
      return captured.map((r) => ({jobId: r.job_id, dlqId: r.dlq_id}))
    }
    case 'run_now':
    case 'reschedule': {
      const statement = spec.action === 'run_now' ? runJobsNowBatch : rescheduleJobsBatch
      const rows = await tx.rows(statement, [
        ...w,
        spec.action === 'run_now',
        spec.action === 'reschedule' ? (spec.runAt ?? null) : null,
        spec.action === 'reschedule' ? (spec.priority ?? null) : null,
        spec.resetAttempts ? 0 : null,
        spec.action === 'reschedule' ? (spec.maxAttempts ?? null) : null,
      ])
      return rows.map((r) => ({jobId: r.id, dlqId: null}))
    }
  }
}

export type JobActionOptions<S extends JobActionSpec> = Omit<S, 'action'> &
  Omit<PerformOptions, 'selection'> & {selector: JobSelector}

async function selectAndPerform(
  db: Database,
  spec: JobActionSpec,
  options: Omit<PerformOptions, 'selection'> & {selector: JobSelector},
): Promise<JobActionResult> {
  const selection = await selectJobs(db, {...spec, selector: options.selector, sampleSize: 0})
  return performJobAction(db, {...options, selection})
}

/** Deletes the selected jobs (never running ones), or moves them into the DLQ with toDlq. */
export function removeJobs(db: Database, options: JobActionOptions<RemoveSpec>): Promise<JobActionResult> {
  return selectAndPerform(db, {action: 'remove', toDlq: options.toDlq}, options)
}

/** Marks the selected jobs as permanently failed (graphile's permanently_fail_jobs); capture moves them to the DLQ at once. */
export function failJobs(db: Database, options: JobActionOptions<FailSpec>): Promise<JobActionResult> {
  return selectAndPerform(db, {action: 'fail', message: options.message, capture: options.capture}, options)
}

/** Makes the selected jobs that are not yet due runnable now (run_at = now), attempts kept unless resetAttempts. */
export function runJobsNow(db: Database, options: JobActionOptions<RunNowSpec>): Promise<JobActionResult> {
  return selectAndPerform(db, {action: 'run_now', resetAttempts: options.resetAttempts}, options)
}

/** Changes run_at (runAt, or now + delayMs), priority and max attempts of the selected jobs (reschedule_jobs). */
export function rescheduleJobs(db: Database, options: JobActionOptions<RescheduleSpec>): Promise<JobActionResult> {
  const {runAt, delayMs, priority, maxAttempts, resetAttempts} = options
  return selectAndPerform(db, {action: 'reschedule', runAt, delayMs, priority, maxAttempts, resetAttempts}, options)
}
