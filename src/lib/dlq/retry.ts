import type {Database} from '../db.js'
import {InternalError, UsageError} from '../errors.js'
import {DEFAULT_MAX_ATTEMPTS, flagsForPriority, isBulkPriority} from '../jobs/priority.js'
import {retryLockedEntries, retryNextEntries, retryStrippedKeys} from '../sql/dlq-actions.js'
import type {RowOf} from '../sql/statement.js'
import {auditContext, type AuditOptions} from './audit.js'
import {forEachBatch} from './scan.js'
import {describeSelector, selectorParams, type DlqSelector} from './selector.js'

/**
 * What a retry does when a job with the entry's job_key is already in the jobs table
 * (waiting, running, or permanently failed and not yet captured):
 * - 'skip' (default): the entry stays in the DLQ and is reported. graphile's replace would
 *   overwrite a waiting job's newer payload with the older failed one.
 * - 'replace': graphile-worker's add_jobs semantics: a waiting job is overwritten (array
 *   payloads are concatenated) and its attempts reset; a running or permanently failed job
 *   loses its key (a running one is also marked as on its last attempt) and the entry is
 *   enqueued as a new job.
 */
export type KeyConflictMode = 'skip' | 'replace'

/**
 * The crate's queue_name 'default': parallel jobs written by backfill ≤ 1.1.0 (and by
 * add_to_dlq for an unknown queue), or a real serial queue named "default" — the table
 * cannot tell. 'parallel' (default) enqueues them without a queue.
 */
export type DefaultQueueMode = 'parallel' | 'serial'

export interface RetryOptions extends AuditOptions {
  selector: DlqSelector
  /** Overrides each entry's priority. */
  priority?: number
  /** Overrides each entry's max_attempts. */
  maxAttempts?: number
  /** When the jobs become runnable (default: now). */
  runAt?: Date
  keyConflict?: KeyConflictMode
  defaultQueue?: DefaultQueueMode
  /** Entries per transaction. */
  batchSize?: number
  signal?: AbortSignal
  onBatch?: (progress: RetryProgress) => void
}

export interface RetryProgress {
  batch: number
  retried: number
  skipped: number
}

export interface RetriedEntry {
  dlqId: string
  jobId: string
  taskIdentifier: string
}

export interface SkippedEntry {
  dlqId: string
  taskIdentifier: string
  /** key_conflict: a job with the same job_key is in the jobs table; invalid: a name graphile rejects. */
  reason: 'key_conflict' | 'invalid'
}

export interface RetryResult {
  /** Shared by this run's audit rows (backfill dlq history). */
  run: string
  retried: number
  /** Entries left in the DLQ. */
  skipped: {keyConflict: number; invalid: number}
  batches: number
  byTask: Record<string, number>
  /** The first entries retried (at most 100). */
  sample: RetriedEntry[]
  /** The first entries left in the DLQ (at most 100). */
  skippedSample: SkippedEntry[]
  /** Stopped early by the signal (after a complete batch). */
  interrupted: boolean
  durationMs: number
}

export const DEFAULT_RETRY_BATCH = 5000
const SMALLINT_MAX = 32767

/**
 * Moves the selected entries back to the jobs table, batch by batch. Each batch is one
 * statement in its own transaction: it locks the batch's entries (skip locked), deletes
 * them, enqueues them through graphile's add_jobs(), and writes lineage, events and the
 * audit row (dlq-actions.ts retrySql). A crash leaves every entry either still in the DLQ or
 * enqueued; two runs at once split the entries and enqueue each once in total.
 */
/** A retry that moved nothing (also the answer to an empty selection). */
export function emptyRetryResult(): RetryResult {
  return {
    run: '',
    retried: 0,
    skipped: {keyConflict: 0, invalid: 0},
    batches: 0,
    byTask: {},
    sample: [],
    skippedSample: [],
    interrupted: false,
    durationMs: 0,
  }
}

export async function retryDlq(db: Database, options: RetryOptions): Promise<RetryResult> {
  validateOverrides(options)
  const started = performance.now()
  const audit = auditContext(options)
  const keyConflict = options.keyConflict ?? 'skip'
  const defaultQueue = options.defaultQueue ?? 'parallel'
  // flagsForPriority decides the flags; the statement picks one of the two sets by the
  // same boundary isBulkPriority uses (priority >= 0).
  const bulkFlags = flagsForPriority(0)
  const fastFlags = flagsForPriority(-1)
  if (!isBulkPriority(0) || isBulkPriority(-1))
    throw new InternalError('the bulk priority boundary moved: update retrySql in sql/dlq-actions.ts')
  const selection = describeSelector(options.selector)
  const overrides = {
    priority: options.priority ?? null,
    maxAttempts: options.maxAttempts ?? null,
    runAt: options.runAt?.toISOString() ?? null,
    keyConflict,
    defaultQueue,
  }
  const result: RetryResult = {...emptyRetryResult(), run: audit.run}
  let batch = 0

  const params = selectorParams(options.selector)
  const common = (): RetryCommon => [
    options.priority ?? null,
    options.maxAttempts ?? null,
    options.runAt ?? null,
    DEFAULT_MAX_ATTEMPTS,
    defaultQueue === 'parallel',
    keyConflict === 'replace',
    bulkFlags,
    fastFlags,
    audit.actor.osUser,
    audit.actor.hostname,
    audit.reason,
    selection,
    {run: audit.run, batch: ++batch, options: overrides},
  ]
  const loop = await forEachBatch(
    db,
    {selector: options.selector, batchSize: options.batchSize ?? DEFAULT_RETRY_BATCH, signal: options.signal},
    {
      next: async (tx, after, limit) => {
        const batchParams = common()
        const rows = await withRetriedRace(tx, keyConflict, () =>
          tx.rows(retryNextEntries, [...batchParams, ...params, after, limit]),
        )
        return {rows, examined: rows.length, lastId: rows[0]?.max_id ?? null}
      },
      locked: (tx, ids) => {
        const batchParams = common()
        return withRetriedRace(tx, keyConflict, () => tx.rows(retryLockedEntries, [...batchParams, ids]))
      },
    },
    (rows) => {
      for (const row of rows) {
        if (row.status === 'retried') {
          result.retried += 1
          result.byTask[row.task_identifier] = (result.byTask[row.task_identifier] ?? 0) + 1
          if (result.sample.length < 100)
            result.sample.push({dlqId: row.dlq_id, jobId: row.job_id as string, taskIdentifier: row.task_identifier})
        } else {
          if (row.status === 'key_conflict') result.skipped.keyConflict += 1
          else result.skipped.invalid += 1
          if (result.skippedSample.length < 100)
            result.skippedSample.push({
              dlqId: row.dlq_id,
              taskIdentifier: row.task_identifier,
              reason: row.status as SkippedEntry['reason'],
            })
        }
      }
      options.onBatch?.({batch, retried: result.retried, skipped: result.skipped.keyConflict + result.skipped.invalid})
    },
  )
  result.batches = loop.batches
  result.interrupted = loop.interrupted
  result.durationMs = performance.now() - started
  return result
}

type RetryRow = RowOf<(typeof retryNextEntries)['columns']>
type RetryCommon = [
  number | null,
  number | null,
  Date | null,
  number,
  boolean,
  boolean,
  string[] | null,
  string[] | null,
  string | null,
  string | null,
  string | null,
  unknown,
  unknown,
]

/**
 * Runs a retry statement under a savepoint, and undoes and reruns it when the statement's
 * snapshot was overtaken: graphile's add_jobs() returned no job for an entry (its enqueue
 * race, graphile #580), or, in skip mode, it replaced a job someone enqueued with the same
 * key after the snapshot, or cleared the key of such a job that a worker had already fetched
 * (retryStrippedKeys); the rerun sees that job and leaves the entry in the DLQ.
 */
async function withRetriedRace(
  tx: Database,
  keyConflict: KeyConflictMode,
  run: () => Promise<RetryRow[]>,
): Promise<RetryRow[]> {
  for (let attempt = 1; ; attempt++) {
    await tx.execScript('savepoint backfill_retry_batch')
    const rows = await run()
    const overtaken =
      rows.some(
        (r) => r.status === 'retried' && (r.job_id === null || (keyConflict === 'skip' && r.replaced === true)),
      ) ||
      // Only a keyed entry's add_jobs() can strip a key: unkeyed batches skip the probe.
      (keyConflict === 'skip' &&
        rows.some((r) => r.status === 'retried' && r.keyed) &&
        (await tx.one(retryStrippedKeys, [])).stripped)
    if (!overtaken) {
      await tx.execScript('release savepoint backfill_retry_batch')
      return rows
    }
    await tx.execScript('rollback to savepoint backfill_retry_batch')
    if (attempt >= 3) {
      throw new InternalError(
        'the jobs table kept changing under this batch (a job key enqueued concurrently, or graphile-worker add_jobs() returning no job) three times; the batch was rolled back (its entries are still in the DLQ)',
        {
          suggestions: ['rerun the same command: it only picks entries still in the DLQ'],
        },
      )
    }
  }
}

function validateOverrides(options: RetryOptions): void {
  if (
    options.priority !== undefined &&
    (!Number.isInteger(options.priority) || options.priority < -32768 || options.priority > SMALLINT_MAX)
  ) {
    throw new UsageError(
      `invalid priority ${options.priority}: expected an integer from -32768 to 32767 (lower runs first)`,
      {code: 'E_BAD_PRIORITY'},
    )
  }
  if (
    options.maxAttempts !== undefined &&
    (!Number.isInteger(options.maxAttempts) || options.maxAttempts < 1 || options.maxAttempts > SMALLINT_MAX)
  ) {
    throw new UsageError(`invalid max attempts ${options.maxAttempts}: expected an integer from 1 to 32767`, {
      code: 'E_BAD_MAX_ATTEMPTS',
    })
  }
  if (options.runAt !== undefined && Number.isNaN(options.runAt.getTime()))
    throw new UsageError('invalid run-at time', {code: 'E_BAD_TIME'})
  if (
    options.batchSize !== undefined &&
    (!Number.isInteger(options.batchSize) || options.batchSize < 1 || options.batchSize > 50_000)
  ) {
    throw new UsageError(`invalid batch size ${options.batchSize}: expected 1 to 50000`, {code: 'E_USAGE'})
  }
}
