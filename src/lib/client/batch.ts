import type {Database} from '../db.js'
import {addJob, addJobsCount, addJobsReturning, taskAndQueueNames} from '../sql/jobs.js'
import type {RowOf} from '../sql/statement.js'
import {rowToJob, type Job} from './job.js'
import type {PreparedJob} from './spec.js'

export const DEFAULT_BATCH_SIZE = 5000
/** A batch is also sent once its JSON reaches this size, whatever the job count. */
export const MAX_BATCH_BYTES = 8 * 1024 * 1024
/** Lists in results (already-in-progress keys) keep at most this many entries; counts are exact. */
export const MAX_LISTED = 1000

export interface BatchWriterOptions {
  batchSize?: number
  /** Collect the written jobs (memory grows with the input; off for streams). */
  returnJobs?: boolean
}

export interface BatchTotals {
  /** Rows graphile-worker wrote (new jobs, and keyed jobs replaced in place). */
  enqueued: number
  /** Keyed jobs not written because a worker held the existing job with that key. */
  alreadyInProgress: number
  /** Their keys (the first MAX_LISTED). */
  alreadyInProgressKeys: string[]
  jobs?: Job[]
}

export function addJobParams(job: PreparedJob) {
  return [
    job.task,
    job.payload,
    job.queue,
    job.runAt,
    job.maxAttempts,
    job.jobKey,
    job.priority,
    job.flags,
    job.jobKeyMode,
  ] as [string, string, string | null, Date | null, number, string | null, number, string[] | null, string]
}

// Bulk inputs repeat a handful of tasks, queues and flag sets: their JSON is computed once.
const jsonCache = new Map<string, string>()
function cachedJson(key: string, value: unknown): string {
  let text = jsonCache.get(key)
  if (text === undefined) {
    if (jsonCache.size >= 10_000) jsonCache.clear()
    text = JSON.stringify(value)
    jsonCache.set(key, text)
  }
  return text
}

/** One job as a graphile job_spec JSON object (null fields left out: json_populate_recordset makes them NULL). */
function specJson(job: PreparedJob): string {
  let text = `{"identifier":${cachedJson(`t${job.task}`, job.task)},"payload":${job.payload},"max_attempts":${job.maxAttempts},"priority":${job.priority}`
  if (job.queue !== null) text += `,"queue_name":${cachedJson(`q${job.queue}`, job.queue)}`
  if (job.runAt !== null) text += `,"run_at":"${job.runAt.toISOString()}"`
  if (job.jobKey !== null) text += `,"job_key":${JSON.stringify(job.jobKey)}`
  if (job.flags !== null) text += `,"flags":${cachedJson(`f${job.flags.join('\u0000')}`, job.flags)}`
  return `${text}}`
}

/**
 * Writes jobs through graphile's add_jobs in batches on one connection (the caller's
 * transaction). At most one batch is in flight while the next one is being built, so memory
 * stays at about two batches however many jobs pass through.
 *
 * A batch is cut early where add_jobs would not behave like successive add_job calls:
 * add_jobs takes preserve_run_at for the whole call, so keyed jobs of the two modes go in
 * separate calls; a job key already in the batch starts a new one (one INSERT … ON CONFLICT
 * cannot touch a row twice); and unsafe_dedupe, which add_jobs does not offer, goes through
 * add_job one job at a time, in order.
 */
export class JobBatchWriter {
  private readonly db: Database
  private readonly batchSize: number
  private readonly returnJobs: boolean
  private parts: string[] = []
  private bytes = 0
  private keys = new Set<string>()
  private preserveRunAt = false
  private inflight: Promise<void> | undefined
  private failure: {error: unknown} | undefined
  private readonly totals: BatchTotals = {enqueued: 0, alreadyInProgress: 0, alreadyInProgressKeys: []}

  constructor(db: Database, options: BatchWriterOptions = {}) {
    this.db = db
    this.batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE)
    this.returnJobs = options.returnJobs ?? false
    if (this.returnJobs) this.totals.jobs = []
  }

  get enqueued(): number {
    return this.totals.enqueued
  }

  /**
   * Adds a job. Returns undefined when it was only queued, or a promise when a batch had to be
   * sent (it resolves once the previous batch finished): the caller awaits only then, which
   * keeps the per-job cost of a million-line input low.
   */
  add(job: PreparedJob): Promise<void> | undefined {
    const key = job.jobKey
    if (key !== null) {
      if (job.jobKeyMode === 'unsafe_dedupe') return this.addDeduplicated(job, key)
      const preserve = job.jobKeyMode === 'preserve_run_at'
      // After the flush the batch holds no keys, so the retry cannot come back here.
      if (this.keys.size > 0 && (preserve !== this.preserveRunAt || this.keys.has(key)))
        return this.flush().then(() => this.add(job))
      if (this.keys.size === 0) this.preserveRunAt = preserve
      this.keys.add(key)
    }
    this.push(job)
    return this.full() ? this.flush() : undefined
  }

  /** unsafe_dedupe exists only in add_job: everything before it is written first, then this one job. */
  private async addDeduplicated(job: PreparedJob, key: string): Promise<void> {
    await this.flush()
    await this.settle()
    const written = rowToJob(await this.db.maybeOne(addJob, addJobParams(job)))
    if (written) this.wrote([written])
    else this.inProgress([key])
  }

  private push(job: PreparedJob): void {
    const text = specJson(job)
    this.parts.push(text)
    this.bytes += text.length
  }

  private full(): boolean {
    return this.parts.length >= this.batchSize || this.bytes >= MAX_BATCH_BYTES
  }

  /** Sends what is pending and waits for every batch; returns the totals. */
  async finish(): Promise<BatchTotals> {
    await this.flush()
    await this.settle()
    return this.totals
  }

  /** Waits for the batch in flight (used before giving up, so nothing runs after a rollback). */
  async abandon(): Promise<void> {
    await this.inflight?.catch(() => undefined)
    this.inflight = undefined
  }

  private async flush(): Promise<void> {
    if (this.parts.length === 0) return
    const json = `[${this.parts.join(',')}]`
    const keys = [...this.keys]
    const preserve = this.preserveRunAt
    this.parts = []
    this.bytes = 0
    this.keys = new Set()
    this.preserveRunAt = false
    await this.settle()
    const sent = this.returnJobs
      ? this.db.rows(addJobsReturning, [json, preserve]).then(async (rows) => {
          const jobs = await this.named(rows)
          this.wrote(jobs)
          this.missing(
            keys,
            jobs.map((j) => j.key),
          )
        })
      : this.db.one(addJobsCount, [json, preserve]).then((row) => {
          this.totals.enqueued += row.count
          this.missing(keys, row.keys)
        })
    // Handled now, rethrown by settle(): an unobserved rejection would kill the process.
    this.inflight = sent.then(
      () => undefined,
      (error: unknown) => {
        this.failure = {error}
      },
    )
  }

  private async settle(): Promise<void> {
    if (this.inflight) {
      await this.inflight
      this.inflight = undefined
    }
    if (this.failure) throw this.failure.error
  }

  /** Adds task and queue names, read in a statement of their own (add_jobs may just have created them). */
  private async named(rows: RowOf<(typeof addJobsReturning)['columns']>[]): Promise<Job[]> {
    const taskIds = [...new Set(rows.map((r) => r.task_id).filter((id): id is number => id !== null))]
    const queueIds = [...new Set(rows.map((r) => r.job_queue_id).filter((id): id is number => id !== null))]
    const names = await this.db.rows(taskAndQueueNames, [taskIds, queueIds])
    const tasks = new Map(names.filter((n) => n.kind === 'task').map((n) => [n.id, n.name]))
    const queues = new Map(names.filter((n) => n.kind === 'queue').map((n) => [n.id, n.name]))
    return rows
      .map((row) =>
        rowToJob({
          ...row,
          task_identifier: tasks.get(row.task_id ?? -1) ?? null,
          queue_name: row.job_queue_id === null ? null : (queues.get(row.job_queue_id) ?? null),
        }),
      )
      .filter((job): job is Job => job !== undefined)
  }

  private wrote(jobs: Job[]): void {
    this.totals.enqueued += jobs.length
    if (this.totals.jobs) this.totals.jobs.push(...jobs)
  }

  private missing(sent: string[], written: readonly (string | null)[]): void {
    if (sent.length === 0) return
    const seen = new Set(written)
    this.inProgress(sent.filter((key) => !seen.has(key)))
  }

  private inProgress(keys: string[]): void {
    this.totals.alreadyInProgress += keys.length
    for (const key of keys)
      if (this.totals.alreadyInProgressKeys.length < MAX_LISTED) this.totals.alreadyInProgressKeys.push(key)
  }
}
