import {BackfillClient, type EnqueueOutcome} from '../client/client.js'
import type {JobSpec} from '../client/spec.js'
import {auditContext, dlqHistory, AUDIT_ACTIONS, type Actor, type AuditAction, type HistoryRun} from '../dlq/audit.js'
import {listDlq, showDlqEntry, type DlqEntry, type ListResult, type ShowResult} from '../dlq/entries.js'
import {entryDocument, jobDocument} from '../json-document.js'
import {previewSelection, type SelectionPreview} from '../dlq/preview.js'
import {purgeDlq, type PurgeResult} from '../dlq/purge.js'
import {retryDlq, type DefaultQueueMode, type KeyConflictMode, type RetryResult} from '../dlq/retry.js'
import {countSelection} from '../dlq/scan.js'
import {isEmptySelector, parseEntryId, selectionAsOfNow, type DlqSelector} from '../dlq/selector.js'
import {dlqStats, type DlqStats} from '../dlq/stats.js'
import type {Database} from '../db.js'
import {UsageError} from '../errors.js'
import {queueStatus, type StatusResult} from '../health/status.js'
import {schemaStatus, type SchemaStatus} from '../health/doctor.js'
import {
  emptyJobActionResult,
  performJobAction,
  requireJobActions,
  selectJobs,
  type JobActionResult,
  type JobActionSpec,
  type JobSelection,
} from '../jobs/actions.js'
import {listJobs, type JobSort, type ListJobsResult} from '../jobs/list.js'
import {isEmptyJobSelector, parseJobId, type JobSelector} from '../jobs/selector.js'
import {showJob, type ShowJobResult} from '../jobs/show.js'
import {cleanLocks, type CleanLocksOptions, type CleanLocksResult} from '../locks/clean.js'
import type {LivenessOptions} from '../locks/owners.js'
import {locksReport, type LocksListResult, type LocksReportOptions} from '../locks/report.js'
import {requireMigrated} from '../schema/inspect.js'
import {consoleCapabilities, consoleJobIdHighWater} from '../sql/console.js'
import {insertDlqAudit} from '../sql/dlq-actions.js'
import {estimateThroughput, type ThroughputEstimate, type ThroughputRing} from './throughput.js'

// --- result documents: exactly what the CLI prints under --json ------------------------------

/** `backfill dlq retry --json`. */
export type DlqRetryDocument =
  ({dryRun: true; selection: DlqSelector} & SelectionPreview) | ({dryRun: false; selection: DlqSelector} & RetryResult)
/** `backfill dlq purge --json`. */
export type DlqPurgeDocument =
  ({dryRun: true; selection: DlqSelector} & SelectionPreview) | ({dryRun: false; selection: DlqSelector} & PurgeResult)
/** `backfill dlq stats --json`. */
export type DlqStatsDocument = DlqStats & {selection: DlqSelector}
/** `backfill dlq history --json`. */
export interface DlqHistoryDocument {
  runs: HistoryRun[]
}
/** `backfill jobs run-now|reschedule|remove|fail --json`. */
export type JobActionDocument =
  {dryRun: true; selection: JobSelection} | ({dryRun: false; selection: JobSelection} & JobActionResult)

/** What the console's role may do, and why not (a standby, a read-only role). */
export interface Capabilities {
  /** State-changing routes exist (not --read-only). */
  actionsEnabled: boolean
  /** The database role can change jobs. */
  canWrite: boolean
  /** Why actions are off, for people. */
  reason: string | null
  role: string
}

/** The overview page's document: `status --json`, the DLQ's top failure groups, capabilities. */
export interface OverviewDocument {
  status: StatusResult
  /** `dlq stats --json` limited to the largest groups; null without a DLQ table. */
  dlq: (Omit<DlqStats, 'groups'> & {groups: DlqStats['groups']; groupsShown: number}) | null
  /** Jobs completed per interval, estimated from counters sampled on each load; null without a ring. */
  throughput: ThroughputEstimate | null
}

// --- reads -------------------------------------------------------------------------------------

export interface ReadOptions {
  liveness?: LivenessOptions
}

export async function overview(
  db: Database,
  options: {topGroups?: number; throughput?: ThroughputRing} & ReadOptions = {},
): Promise<OverviewDocument> {
  // Read before the counts: an insert in between shows up next interval, not twice.
  const lastId = options.throughput ? (await db.one(consoleJobIdHighWater, [])).last_id : null
  const status = await queueStatus(db, {...options.liveness})
  let throughput: ThroughputEstimate | null = null
  if (options.throughput) {
    options.throughput.push({
      at: status.at.toISOString(),
      jobs: status.totals.jobs,
      lastId: lastId === null ? null : Number(lastId),
      dlq: status.totals.dlq ?? 0,
    })
    throughput = estimateThroughput(options.throughput.samples())
  }
  if (!status.dlq.exists) return {status, dlq: null, throughput}
  const stats = await dlqStats(db, {selector: {}})
  const top = options.topGroups ?? 5
  return {
    status,
    dlq: {...stats, groups: stats.groups.slice(0, top), groupsShown: Math.min(top, stats.groups.length)},
    throughput,
  }
}

export async function capabilities(db: Database, readOnly: boolean): Promise<Capabilities> {
  const row = await db.one(consoleCapabilities, [])
  const reason = readOnly
    ? 'the console runs read-only (--read-only)'
    : row.recovery
      ? 'the database is a read-only standby (in recovery)'
      : row.read_only
        ? `the database role "${row.role}" runs read-only transactions (default_transaction_read_only)`
        : row.can_write === false
          ? `the database role "${row.role}" may not update or delete graphile-worker's jobs`
          : null
  const canWrite = !row.recovery && !row.read_only && row.can_write !== false
  return {actionsEnabled: !readOnly && canWrite, canWrite, reason, role: row.role}
}

export async function jobsList(
  db: Database,
  options: {selector: JobSelector; sort: JobSort; cursor?: string} & ReadOptions,
): Promise<ListJobsResult> {
  const result = await listJobs(db, {
    selector: options.selector,
    sort: options.sort,
    cursor: options.cursor,
    liveness: options.liveness,
  })
  // As `jobs list --json` writes it: each payload exactly as stored, once.
  return {...result, jobs: result.jobs.map(jobDocument)} as unknown as ListJobsResult
}

export async function jobShow(
  db: Database,
  options: {id?: string; jobKey?: string} & ReadOptions,
): Promise<ShowJobResult> {
  const result = await showJob(db, {
    ...(options.id !== undefined ? {id: parseJobId(options.id, 'job id')} : {jobKey: options.jobKey}),
    liveness: options.liveness,
  })
  // As `jobs show --json` writes it: the payload exactly as stored.
  return {...result, job: jobDocument(result.job)} as unknown as ShowJobResult
}

export async function dlqList(db: Database, options: {selector: DlqSelector; cursor?: string}): Promise<ListResult> {
  await requireMigrated(db, {dlq: true})
  const result = await listDlq(db, {selector: options.selector, cursor: options.cursor})
  // As `dlq list --json` writes it: each payload exactly as stored, once.
  return {...result, entries: result.entries.map(entryDocument)} as unknown as ListResult
}

export async function dlqShow(db: Database, id: string): Promise<ShowResult> {
  await requireMigrated(db, {dlq: true})
  const result = await showDlqEntry(db, parseEntryId(id, 'ids are the first column of the DLQ list'))
  return {...result, entry: entryDocument(result.entry)} as unknown as ShowResult
}

export async function dlqGroups(db: Database, selector: DlqSelector): Promise<DlqStatsDocument> {
  await requireMigrated(db, {dlq: true})
  return {...(await dlqStats(db, {selector})), selection: selector}
}

export async function dlqAudit(
  db: Database,
  options: {action?: string; since?: Date; limit?: number},
): Promise<DlqHistoryDocument> {
  if (options.action !== undefined && !(AUDIT_ACTIONS as readonly string[]).includes(options.action))
    throw new UsageError(`invalid action "${options.action}": expected one of ${AUDIT_ACTIONS.join(', ')}`, {
      code: 'E_USAGE',
    })
  await requireMigrated(db, {dlq: true})
  return {
    runs: await dlqHistory(db, {
      action: options.action as AuditAction | undefined,
      since: options.since,
      limit: options.limit ?? 20,
    }),
  }
}

export function locks(db: Database, options: LocksReportOptions): Promise<LocksListResult> {
  return locksReport(db, options)
}

export function schema(db: Database): Promise<SchemaStatus> {
  return schemaStatus(db)
}

// --- actions: a preview the caller confirms, then the change ----------------------------------

/** Destructive routes never treat "no selector" as "everything". */
export function refuseEmpty(empty: boolean, all: boolean, verb: string, what: string): void {
  if (all || !empty) return
  throw new UsageError(`refusing to ${verb} without a selection`, {
    code: 'E_EMPTY_SELECTION',
    suggestions: [`select ${what}`, `or pass all=true to ${verb} every one (preview with dryRun=true first)`],
  })
}

export interface JobActionPlan {
  kind: 'jobs'
  selection: JobSelection
}

/** Selects the jobs an action would change (the dry run); the plan is what a confirmation changes. */
export async function planJobAction(
  db: Database,
  spec: JobActionSpec,
  selector: JobSelector,
  all: boolean,
): Promise<JobActionPlan> {
  refuseEmpty(
    isEmptyJobSelector(selector),
    all,
    verbOf(spec),
    'jobs by id, task, queue, job-key, state, time, error, flag or priority',
  )
  const inspection = await requireJobActions(db, spec)
  return {kind: 'jobs', selection: await selectJobs(db, {...spec, selector, inspection})}
}

export async function performJobPlan(
  db: Database,
  plan: JobActionPlan,
  audit: {actor: Actor; reason?: string},
): Promise<JobActionDocument> {
  const {selection} = plan
  if (selection.count === 0) return {dryRun: false, selection, ...emptyJobActionResult(selection.spec)}
  const result = await performJobAction(db, {selection, actor: audit.actor, reason: audit.reason})
  return {dryRun: false, selection, ...result}
}

function verbOf(spec: JobActionSpec): string {
  return spec.action === 'remove' ? (spec.toDlq ? 'move to the DLQ' : 'remove') : spec.action.replace('_', '-')
}

export interface RetryPlan {
  kind: 'retry'
  selection: DlqSelector
  /** The selection as of the preview: entries failing later are left alone. */
  asOf: DlqSelector
  count: number
  options: {
    priority?: number
    maxAttempts?: number
    runAt?: Date
    keyConflict: KeyConflictMode
    defaultQueue: DefaultQueueMode
  }
}

export interface PurgePlan {
  kind: 'purge'
  selection: DlqSelector
  asOf: DlqSelector
  count: number
}

export async function planRetry(
  db: Database,
  selection: DlqSelector,
  all: boolean,
  options: RetryPlan['options'],
): Promise<{plan: RetryPlan; preview: DlqRetryDocument}> {
  refuseEmpty(isEmptySelector(selection), all, 'retry', 'entries by id, task, queue, job-key, time, error or group')
  await requireMigrated(db, {dlq: true})
  const asOf = await selectionAsOfNow(db, selection)
  const preview = await previewSelection(db, {selector: asOf, checkKeyConflicts: options.keyConflict === 'skip'})
  return {
    plan: {kind: 'retry', selection, asOf, count: preview.stats.total, options},
    preview: {dryRun: true, selection, ...preview, sample: preview.sample.map(entryDocument) as unknown as DlqEntry[]},
  }
}

export async function performRetry(
  db: Database,
  plan: RetryPlan,
  audit: {actor: Actor; reason?: string},
): Promise<DlqRetryDocument> {
  const result = await retryDlq(db, {selector: plan.asOf, ...plan.options, actor: audit.actor, reason: audit.reason})
  return {dryRun: false, selection: plan.selection, ...result}
}

export async function planPurge(
  db: Database,
  selection: DlqSelector,
  all: boolean,
): Promise<{plan: PurgePlan; preview: DlqPurgeDocument}> {
  refuseEmpty(isEmptySelector(selection), all, 'purge', 'entries by id, task, queue, job-key, time, error or group')
  await requireMigrated(db, {dlq: true})
  const asOf = await selectionAsOfNow(db, selection)
  const preview = await previewSelection(db, {selector: asOf})
  return {
    plan: {kind: 'purge', selection, asOf, count: preview.stats.total},
    preview: {dryRun: true, selection, ...preview, sample: preview.sample.map(entryDocument) as unknown as DlqEntry[]},
  }
}

export async function performPurge(
  db: Database,
  plan: PurgePlan,
  audit: {actor: Actor; reason?: string},
): Promise<DlqPurgeDocument> {
  const result = await purgeDlq(db, {selector: plan.asOf, actor: audit.actor, reason: audit.reason})
  return {dryRun: false, selection: plan.selection, ...result}
}

/** Counts a DLQ selection now (a direct, unpreviewed retry or purge). */
export async function countDlq(db: Database, selection: DlqSelector): Promise<number> {
  return countSelection(db, selection)
}

export interface LocksPlan {
  kind: 'locks'
  options: CleanLocksOptions
  keys: string[]
}

export async function planLockClean(
  db: Database,
  options: CleanLocksOptions,
): Promise<{plan: LocksPlan; preview: CleanLocksResult}> {
  const preview = await cleanLocks(db, {...options, dryRun: true})
  const keys = preview.locks.filter((l) => l.action === 'release').map((l) => l.key)
  return {plan: {kind: 'locks', options, keys}, preview}
}

export async function performLockClean(
  db: Database,
  plan: LocksPlan,
  audit: {actor: Actor; reason?: string; who: string},
): Promise<CleanLocksResult> {
  if (plan.keys.length === 0) return {...(await cleanLocks(db, {...plan.options, dryRun: true})), dryRun: false}
  // Releases only the locks the preview showed, each only if it is still the very lock judged.
  return cleanLocks(db, {
    ...plan.options,
    only: plan.keys,
    actor: `the console (${audit.who})`,
    audit: {actor: audit.actor, reason: audit.reason},
  })
}

/**
 * Enqueues one job (graphile's add_job) and, when the audit table exists, records who did it
 * in the same transaction (action `jobs.enqueue`): the console's enqueue is an operator action.
 */
export async function enqueueAudited(
  db: Database,
  job: {task: string; payload: unknown; spec: JobSpec},
  audit: {actor: Actor},
): Promise<EnqueueOutcome> {
  const context = auditContext({actor: audit.actor})
  return db.transaction(async (tx) => {
    const inspection = await requireMigrated(tx)
    const client = await BackfillClient.fromDatabase(tx, {ensureSchema: false, inspection})
    const outcome = await client.enqueue(job.task, job.payload, job.spec)
    if (outcome.status === 'enqueued' && inspection.backfill.catalog.relations.has('backfill_dlq_audit')) {
      await tx.rows(insertDlqAudit, [
        'jobs.enqueue',
        1,
        null,
        [outcome.job.id],
        context.actor.osUser,
        context.actor.hostname,
        null,
        {task: job.task, queue: job.spec.queue ?? null, jobKey: job.spec.jobKey ?? null},
        {run: context.run, action: outcome.action},
      ])
    }
    return outcome
  })
}
