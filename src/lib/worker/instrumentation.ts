import type {Job, JobHelpers, Task, TaskList} from 'graphile-worker'

import type {Database} from '../db.js'
import {exhaustLockedJob} from '../sql/worker.js'
import {describeError} from './async.js'
import type {PoolRole, WorkerEvent} from './events.js'
import {retryDelayMs} from './graphile-adapter.js'
import type {WorkerMetrics} from './metrics.js'
import {isPermanentError, PERMANENT_FAILURE_PREFIX} from './permanent-error.js'

export interface JobCounts {
  started: number
  succeeded: number
  failed: number
  permanent: number
}

/**
 * Holds a pool's jobs until its presence (registry row and session) exists: a task that
 * takes the process down must leave a lock others can prove dead, never an "unknown" one.
 * graphile fetches as soon as a pool is created, so the gate is on the task side.
 */
export class PresenceGate {
  /** Checked on every job: no promise is awaited once open. */
  ready = false
  private readonly settled: Promise<void>
  private resolve!: () => void
  private reject!: (error: Error) => void

  constructor() {
    this.settled = new Promise<void>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
    this.settled.catch(() => undefined)
  }

  open(): void {
    this.ready = true
    this.resolve()
  }

  /** Jobs waiting (and any later one) fail: the pool is being stopped. */
  fail(error: unknown): void {
    this.reject(new Error(`worker presence could not be established: ${describeError(error)}`))
  }

  wait(): Promise<void> {
    return this.settled
  }
}

/** A pool's running and finished job counts, read by its adaptive prefetch (plain fields: no call per job). */
export interface PoolLoad {
  running: number
  completed: number
  /** Total handler time (ms). */
  busyMs: number
}

export interface InstrumentationHooks {
  emit(event: WorkerEvent): void
  /** Whether anyone listens to events (job start/success events are skipped otherwise). */
  listening(): boolean
  /** A job exhausted its attempts or failed permanently (the DLQ captures it soon). */
  onExhausted(): void
}

/**
 * Wraps task handlers: counts, metrics and job events around each run, and permanent
 * failures (a PermanentError uses up the job's attempts while we still hold its lock, so
 * graphile's own failure write leaves it exhausted).
 */
export class TaskInstrumentation {
  readonly counts: JobCounts = {started: 0, succeeded: 0, failed: 0, permanent: 0}
  private readonly db: Database
  private readonly metrics: WorkerMetrics
  private readonly hooks: InstrumentationHooks

  constructor(db: Database, metrics: WorkerMetrics, hooks: InstrumentationHooks) {
    this.db = db
    this.metrics = metrics
    this.hooks = hooks
  }

  /** The tasks a pool runs; with a gate, none starts before the gate opens. */
  wrap(tasks: TaskList, role: PoolRole, gate?: PresenceGate, load?: PoolLoad): TaskList {
    const wrapped: TaskList = {}
    for (const [name, task] of Object.entries(tasks))
      wrapped[name] = this.wrapTask(name, task as Task, role, gate, load)
    return wrapped
  }

  private wrapTask(
    name: string,
    task: Task,
    role: PoolRole,
    gate: PresenceGate | undefined,
    load: PoolLoad | undefined,
  ): Task {
    // Per-task metric children, resolved once: label lookups on every job cost throughput.
    // Plain numbers, added to the counters at scrape time (see jobCountCell).
    const cell = this.metrics.jobCountCell(name)
    const successDuration = this.metrics.jobDuration.labels({task: name, result: 'success'})
    const failureDuration = this.metrics.jobDuration.labels({task: name, result: 'failure'})
    const {counts, hooks} = this
    return async (payload: unknown, helpers: JobHelpers) => {
      if (gate && !gate.ready) await gate.wait()
      const {job} = helpers
      const ref = hooks.listening()
        ? {pool: role, task: name, jobId: String(job.id), attempt: job.attempts, maxAttempts: job.max_attempts}
        : undefined
      const t0 = performance.now()
      counts.started += 1
      cell.started += 1
      if (load) load.running += 1
      if (ref) hooks.emit({type: 'job:start', ...ref})
      try {
        const result = await task(payload, helpers)
        const durationMs = performance.now() - t0
        if (load) {
          load.running -= 1
          load.completed += 1
          load.busyMs += durationMs
        }
        counts.succeeded += 1
        cell.completed += 1
        successDuration.observe(durationMs / 1000)
        if (ref) hooks.emit({type: 'job:success', durationMs, ...ref})
        return result
      } catch (error) {
        const durationMs = performance.now() - t0
        if (load) {
          load.running -= 1
          load.completed += 1
          load.busyMs += durationMs
        }
        const permanent = isPermanentError(error)
        const outcome = permanent ? 'permanent' : job.attempts >= job.max_attempts ? 'exhausted' : 'retry'
        counts.failed += 1
        if (permanent) counts.permanent += 1
        this.metrics.jobsFailed.inc({task: name, outcome})
        failureDuration.observe(durationMs / 1000)
        hooks.emit({
          type: 'job:failure',
          durationMs,
          error: describeError(error),
          outcome,
          ...(outcome === 'retry' ? {retryInMs: retryDelayMs(job.attempts)} : {}),
          pool: role,
          task: name,
          jobId: String(job.id),
          attempt: job.attempts,
          maxAttempts: job.max_attempts,
        })
        if (permanent) {
          await this.exhaust(job)
          hooks.onExhausted()
          throw permanentFailure(error)
        }
        if (outcome === 'exhausted') hooks.onExhausted()
        throw error
      }
    }
  }

  /** Uses up the attempts of a job we hold, so graphile's failure write leaves it exhausted. */
  private async exhaust(job: Job): Promise<void> {
    const owner = (job as Job & {locked_by?: string | null}).locked_by
    if (!owner) return
    try {
      await this.db.exec(exhaustLockedJob, [String(job.id), owner])
    } catch (error) {
      this.hooks.emit({type: 'error', where: `permanent failure of job ${job.id}`, error: describeError(error)})
    }
  }
}

function permanentFailure(error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error)
  const wrapped = new Error(`${PERMANENT_FAILURE_PREFIX}${message}`)
  if (error instanceof Error && error.stack)
    wrapped.stack = `${wrapped.message}\n${error.stack.split('\n').slice(1).join('\n')}`
  return wrapped
}
