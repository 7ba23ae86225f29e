import {EventEmitter} from 'node:events'

import type {Job, JobHelpers, ParsedCronItem, Runner, Task, TaskList, WorkerPool} from 'graphile-worker'

import type {Database} from '../db.js'
import {captureExhausted} from '../dlq/capture.js'
import {BULK_FLAG} from '../jobs/priority.js'
import {isAmbiguousOutcome} from '../pg-errors.js'
import {requireMigrated} from '../schema/inspect.js'
import {migrate} from '../schema/migrate.js'
import {countLockedBy, dlqSize, exhaustLockedJob, pruneWorkers, releaseOwnLocks} from '../sql/worker.js'
import {BACKFILL_VERSION} from '../version.js'
import {
  planPools,
  type PoolPlan,
  resolveWorkerConfig,
  totalConcurrency,
  type WorkerConfig,
  type WorkerConfigInput,
} from './config.js'
import type {PoolRole, WorkerEvent} from './events.js'
import {createWorkerMetrics, type WorkerMetrics} from './metrics.js'
import {isPermanentError, PERMANENT_FAILURE_PREFIX} from './permanent-error.js'
import {WorkerPresence} from './presence.js'

export interface WorkerRunnerOptions {
  /** The schema and connection; its pool must allow totalConcurrency + 6 connections (see requiredPoolSize). */
  db: Database
  tasks: TaskList
  config?: WorkerConfigInput
  cron?: ParsedCronItem[]
  /** Receives every event (job lines, captures, shutdown); the CLI turns them into logs. */
  onEvent?: (event: WorkerEvent) => void
  metrics?: WorkerMetrics
  /**
   * Stale-lock cleanup run at startup and every lockCleanupIntervalMs. Default: the locks
   * module's cleanLocks (dead owners at once, unknown owners past the stale timeouts, live
   * owners never); false turns it off.
   */
  cleanLocks?:
    false | ((db: Database, config: WorkerConfig) => Promise<{queueLocks: number; jobLocks: number; details?: unknown}>)
  /** Stop when no heartbeat was recorded for this long (default fenceAfter(heartbeatIntervalMs)). */
  fenceAfterMs?: number
}

export interface WorkerSummary {
  poolIds: string[]
  jobs: {started: number; succeeded: number; failed: number; permanent: number}
  dlqCaptured: number
  forced: boolean
  /** Locks this worker still held when its pools had stopped, released on the way out. */
  releasedJobLocks: number
  releasedQueueLocks: number
  durationMs: number
  /** Set when the worker stopped because a pool failed, not because it was asked to. */
  failure?: string
}

export interface WorkerHandle {
  readonly poolIds: readonly string[]
  /** Graceful: stop fetching, finish running jobs (aborted after shutdownTimeoutMs), release everything. */
  stop(options?: {force?: boolean; reason?: string}): Promise<WorkerSummary>
  /** Settles when the worker has stopped (by stop() or because a pool failed). */
  readonly done: Promise<WorkerSummary>
}

interface RunningPool {
  plan: PoolPlan
  runner: Runner
  workerPool: WorkerPool
  presence: WorkerPresence
}

/** Connections the pg pool needs for a configuration: jobs, LISTEN + fetch per pool, capture, registry. */
export function requiredPoolSize(config: WorkerConfigInput = {}): number {
  const resolved = resolveWorkerConfig(config)
  const pools = planPools(resolved, BULK_FLAG)
  return totalConcurrency(pools) + pools.length * 2 + 4
}

/**
 * Runs task handlers with graphile-worker, plus what the crate's WorkerRunner promised:
 * DLQ capture (at startup before anything else, on every interval, and soon after a job
 * exhausts its attempts), permanent failures, reserved fast capacity, stale-lock cleanup,
 * and a shutdown that leaves no job locked by this worker.
 */
export class WorkerRunner {
  readonly config: WorkerConfig
  readonly metrics: WorkerMetrics
  private readonly db: Database
  private readonly tasks: TaskList
  private readonly cron: ParsedCronItem[] | undefined
  private readonly emitter = new EventEmitter()
  private readonly cleanLocks: Exclude<WorkerRunnerOptions['cleanLocks'], false>
  private readonly fenceAfterMs: number
  private readonly counts = {started: 0, succeeded: 0, failed: 0, permanent: 0, dlqCaptured: 0}
  private captureState: {running: Promise<void> | undefined; again: boolean; timer: NodeJS.Timeout | undefined} = {
    running: undefined,
    again: false,
    timer: undefined,
  }
  /** Exhausted jobs the DLQ cannot hold (found by capture); skipped from then on, reported once. */
  private readonly uncapturable = new Set<string>()
  private stopping = false
  private forced = false
  private failure: string | undefined
  /** Set by start() once it can stop the worker; a failure found earlier stops it right then. */
  private requestStop: (() => void) | undefined

  constructor(options: WorkerRunnerOptions) {
    this.db = options.db
    this.tasks = options.tasks
    this.cron = options.cron
    this.cleanLocks = options.cleanLocks === false ? undefined : (options.cleanLocks ?? defaultCleanLocks)
    this.config = resolveWorkerConfig(options.config)
    this.metrics = options.metrics ?? createWorkerMetrics()
    this.fenceAfterMs = options.fenceAfterMs ?? fenceAfter(this.config.heartbeatIntervalMs)
    if (options.onEvent) this.emitter.on('event', options.onEvent)
  }

  /** The crate's run_until_cancelled: runs until the signal fires, then drains and resolves. */
  async run(signal: AbortSignal): Promise<WorkerSummary> {
    const handle = await this.start()
    const onAbort = (): void => void handle.stop({reason: String(signal.reason ?? 'aborted')})
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, {once: true})
    try {
      return await handle.done
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  /** The crate's spawn_background: starts and returns a handle with stop(). */
  async start(): Promise<WorkerHandle> {
    const started = performance.now()
    await this.prepare()
    const pools: RunningPool[] = []
    const plans = planPools(this.config, BULK_FLAG)
    try {
      for (const [index, plan] of plans.entries()) {
        // Cron runs in one pool only, or every scheduled item would be enqueued twice.
        pools.push(await this.startPool(plan, index === plans.length - 1 ? this.cron : undefined))
      }
    } catch (error) {
      await Promise.allSettled(pools.map(async (p) => p.runner.stop()))
      throw error
    }
    this.emit({
      type: 'worker:start',
      schema: this.db.schema,
      database: this.db.target.display,
      tasks: Object.keys(this.tasks).sort(),
      pools: pools.map((p) => ({...p.plan, poolId: p.workerPool.id})),
      dlq: this.config.dlqIntervalMs !== null,
      once: false,
    })
    const timers = this.startTimers(pools, (silentMs) => {
      if (this.stopping) return
      this.failure ??= `lost contact with the database: no heartbeat recorded for ${Math.round(silentMs / 1000)} s; stopping before other workers take this worker's jobs over`
      this.emit({type: 'error', where: 'liveness', error: this.failure})
      void stop({force: true, reason: this.failure}).catch(() => undefined)
    })
    let stopPromise: Promise<WorkerSummary> | undefined
    let settle!: (summary: WorkerSummary) => void
    let fail!: (error: unknown) => void
    const done = new Promise<WorkerSummary>((resolve, reject) => {
      settle = resolve
      fail = reject
    })
    const stop = (options: {force?: boolean; reason?: string} = {}): Promise<WorkerSummary> => {
      if (options.force) this.forced = true
      if (stopPromise && options.force) this.forceAll(pools, options.reason ?? 'forced stop')
      stopPromise ??= this.shutdown(pools, timers, started, options).then(
        (summary) => {
          settle(summary)
          return summary
        },
        (error: unknown) => {
          fail(error)
          throw error
        },
      )
      return stopPromise
    }
    this.requestStop = () => void stop({reason: this.failure}).catch(() => undefined)
    if (this.failure) this.requestStop()
    // A pool that dies on its own (e.g. a breaking migration elsewhere) stops the whole worker.
    for (const pool of pools) {
      pool.runner.promise.then(
        () => {
          if (!this.stopping) {
            // graphile shuts a pool down by itself after a fatal error (e.g. a lost batch write).
            this.failure ??= `pool ${pool.workerPool.id} stopped on its own`
            void stop({reason: this.failure}).catch(() => undefined)
          }
        },
        (error: unknown) => {
          this.emit({type: 'error', where: `pool ${pool.workerPool.id}`, error: describe(error)})
          if (!this.stopping) {
            this.failure ??= `pool ${pool.workerPool.id} failed: ${describe(error)}`
            void stop({reason: this.failure}).catch(() => undefined)
          }
        },
      )
    }
    return {poolIds: pools.map((p) => p.workerPool.id), stop, done}
  }

  /** The crate's process_available_jobs, done properly: capture, run what is runnable now, capture again. */
  async runOnce(): Promise<WorkerSummary> {
    const started = performance.now()
    await this.prepare()
    const {runOnce} = await import('graphile-worker')
    // No local queue and no batched writes: graphile's runOnce stops at the first empty fetch,
    // and a serial queue whose last completion is still batched looks locked (empty) to it.
    const plan: PoolPlan = {
      role: 'shared',
      concurrency: this.config.concurrency,
      forbiddenFlags: null,
      localQueueSize: 0,
    }
    const events = new EventEmitter()
    const poolIds: string[] = []
    let presences: Promise<WorkerPresence>[] = []
    events.on('pool:create', ({workerPool}: {workerPool: WorkerPool}) => {
      poolIds.push(workerPool.id)
      presences.push(this.startPresence(workerPool.id, plan))
      if (poolIds.length === 1)
        this.emit({
          type: 'worker:start',
          schema: this.db.schema,
          database: this.db.target.display,
          tasks: Object.keys(this.tasks).sort(),
          pools: [{...plan, poolId: workerPool.id}],
          dlq: this.config.dlqIntervalMs !== null,
          once: true,
        })
    })
    // Even unbatched, graphile fetches a slot's next job before the previous completion has
    // committed, so a serial queue's next job can look locked and end a pass early: passes
    // repeat until one starts nothing.
    for (let pass = 1; pass <= 10_000; pass++) {
      const startedBefore = this.counts.started
      try {
        await runOnce(await this.graphileOptions(plan, events, {batchDelayMs: -1}), this.wrapTasks(plan.role))
      } finally {
        for (const presence of await Promise.allSettled(presences))
          if (presence.status === 'fulfilled') await presence.value.stop()
        presences = []
      }
      if (this.counts.started === startedBefore) break
    }
    if (this.config.dlqIntervalMs !== null) await this.capture('once')
    let releasedJobLocks = 0
    let releasedQueueLocks = 0
    for (const poolId of poolIds) {
      const released = await this.db.one(releaseOwnLocks, [poolId])
      releasedJobLocks += released.jobs
      releasedQueueLocks += released.queues
    }
    return {
      poolIds,
      jobs: {
        started: this.counts.started,
        succeeded: this.counts.succeeded,
        failed: this.counts.failed,
        permanent: this.counts.permanent,
      },
      dlqCaptured: this.counts.dlqCaptured,
      forced: false,
      releasedJobLocks,
      releasedQueueLocks,
      durationMs: performance.now() - started,
    }
  }

  on(listener: (event: WorkerEvent) => void): () => void {
    this.emitter.on('event', listener)
    return () => this.emitter.off('event', listener)
  }

  private emit(event: WorkerEvent): void {
    this.emitter.emit('event', event)
  }

  /** Schema, then the startup capture and cleanup, before any graphile pool touches a job. */
  private async prepare(): Promise<void> {
    const dlq = this.config.dlqIntervalMs !== null
    if (this.config.migrate) await migrate(this.db)
    else await requireMigrated(this.db, {dlq: true})
    if (dlq) await this.capture('startup')
    if (this.cleanLocks) await this.runLockCleanup('startup')
    await this.db
      .exec(pruneWorkers, [7 * 86_400])
      .catch((error: unknown) => this.emit({type: 'error', where: 'registry prune', error: describe(error)}))
  }

  private async startPool(plan: PoolPlan, cron: ParsedCronItem[] | undefined): Promise<RunningPool> {
    const {run} = await import('graphile-worker')
    const events = new EventEmitter()
    let workerPool: WorkerPool | undefined
    events.on('pool:create', (event: {workerPool: WorkerPool}) => {
      workerPool = event.workerPool
    })
    // Without a local queue each slot fetches for itself (the local queue's fetch errors are only logged).
    events.on('worker:getJob:error', (event: {error: unknown}) => this.fetchFailed(event.error))
    const runner = await run(
      {...(await this.graphileOptions(plan, events)), parsedCronItems: cron ?? []},
      this.wrapTasks(plan.role),
    )
    if (!workerPool) {
      await runner.stop()
      throw new Error('graphile-worker did not report its pool')
    }
    let presence: WorkerPresence
    try {
      presence = await this.startPresence(workerPool.id, plan)
    } catch (error) {
      await runner.stop().catch(() => undefined)
      throw error
    }
    this.metrics.workerActive.set({pool: plan.role}, 1)
    return {plan, runner, workerPool, presence}
  }

  private async startPresence(poolId: string, plan: PoolPlan): Promise<WorkerPresence> {
    const presence = new WorkerPresence(this.db, {
      poolId,
      heartbeatIntervalMs: this.config.heartbeatIntervalMs,
      version: BACKFILL_VERSION,
      metadata: {role: plan.role, concurrency: plan.concurrency, tasks: Object.keys(this.tasks).sort()},
      onError: (error) => this.emit({type: 'error', where: `presence ${poolId}`, error: describe(error)}),
    })
    try {
      await presence.start()
      return presence
    } catch (error) {
      // A worker nobody can prove alive would hold "unknown" locks that cleaners release by
      // age: refuse to run rather than risk running its jobs twice.
      await presence.stop().catch(() => undefined)
      throw error
    }
  }

  private async graphileOptions(plan: PoolPlan, events: EventEmitter, overrides: {batchDelayMs?: number} = {}) {
    const {Logger} = await import('graphile-worker')
    return {
      pgPool: this.db.pool,
      schema: this.db.schema,
      concurrency: plan.concurrency,
      pollInterval: this.config.pollIntervalMs,
      noHandleSignals: true,
      noPreparedStatements: !this.config.preparedStatements,
      forbiddenFlags: plan.forbiddenFlags,
      events: events as never,
      logger: new Logger(
        () => (level: string, message: string, meta?: {error?: unknown}) => this.graphileLog(level, message, meta),
      ),
      preset: {
        worker: {
          ...(plan.localQueueSize > 0 ? {localQueue: {size: plan.localQueueSize}} : {}),
          completeJobBatchDelay: overrides.batchDelayMs ?? this.config.completeBatchDelayMs,
          failJobBatchDelay: overrides.batchDelayMs ?? this.config.failBatchDelayMs,
          // Tasks see helpers.abortSignal shortly before the shutdown timeout aborts them.
          gracefulShutdownAbortTimeout: Math.max(0, Math.floor(this.config.shutdownTimeoutMs * 0.8)),
        },
      },
    }
  }

  private graphileLog(level: string, message: string, meta?: {error?: unknown}): void {
    // graphile's per-job success/failure lines duplicate our own job events.
    if (/^(Completed|Failed) task /.test(message)) return
    if (message.startsWith('Error occurred fetching jobs')) this.fetchFailed(meta?.error)
    const mapped = level === 'error' || level === 'warning' || level === 'info' ? level : 'debug'
    this.emit({type: 'log', level: mapped, message})
  }

  /**
   * A fetch whose connection broke may have committed its locks without the pool ever seeing
   * the jobs: graphile keeps running with them locked under a live pool id, so no cleaner may
   * release them (seen in the chaos soak across a PostgreSQL restart). Only a stop releases
   * them (shutdown frees everything the pool id holds), so the worker stops with a failure and
   * its supervisor starts a fresh one. Errors the server reported (a SQLSTATE outside classes
   * 08 and 57) rolled back, and graphile simply retries them.
   */
  private fetchFailed(error: unknown): void {
    // A stop already under way releases everything anyway.
    if (this.stopping || this.failure !== undefined || !isAmbiguousOutcome(error)) return
    this.failure = `lost the database connection while fetching jobs (${describe(error)}); stopping so that jobs the fetch may have locked are released (restart the worker)`
    this.emit({type: 'error', where: 'pool', error: this.failure})
    this.requestStop?.()
  }

  private wrapTasks(role: PoolRole): TaskList {
    const wrapped: TaskList = {}
    for (const [name, task] of Object.entries(this.tasks)) wrapped[name] = this.wrapTask(name, task as Task, role)
    return wrapped
  }

  private wrapTask(name: string, task: Task, role: PoolRole): Task {
    // Per-task metric children, resolved once: label lookups on every job cost throughput.
    const started = this.metrics.jobsStarted.labels({task: name})
    const completed = this.metrics.jobsCompleted.labels({task: name})
    const successDuration = this.metrics.jobDuration.labels({task: name, result: 'success'})
    const failureDuration = this.metrics.jobDuration.labels({task: name, result: 'failure'})
    return async (payload: unknown, helpers: JobHelpers) => {
      const {job} = helpers
      const listening = this.emitter.listenerCount('event') > 0
      const ref = listening
        ? {pool: role, task: name, jobId: String(job.id), attempt: job.attempts, maxAttempts: job.max_attempts}
        : undefined
      const t0 = performance.now()
      this.counts.started += 1
      started.inc()
      if (ref) this.emit({type: 'job:start', ...ref})
      try {
        const result = await task(payload, helpers)
        const durationMs = performance.now() - t0
        this.counts.succeeded += 1
        completed.inc()
        successDuration.observe(durationMs / 1000)
        if (ref) this.emit({type: 'job:success', durationMs, ...ref})
        return result
      } catch (error) {
        const durationMs = performance.now() - t0
        const permanent = isPermanentError(error)
        const outcome = permanent ? 'permanent' : job.attempts >= job.max_attempts ? 'exhausted' : 'retry'
        this.counts.failed += 1
        if (permanent) this.counts.permanent += 1
        this.metrics.jobsFailed.inc({task: name, outcome})
        failureDuration.observe(durationMs / 1000)
        this.emit({
          type: 'job:failure',
          durationMs,
          error: describe(error),
          outcome,
          pool: role,
          task: name,
          jobId: String(job.id),
          attempt: job.attempts,
          maxAttempts: job.max_attempts,
        })
        if (permanent) {
          await this.exhaust(job)
          if (this.config.dlqIntervalMs !== null) this.scheduleCapture()
          throw permanentFailure(error)
        }
        if (outcome === 'exhausted' && this.config.dlqIntervalMs !== null) this.scheduleCapture()
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
      this.emit({type: 'error', where: `permanent failure of job ${job.id}`, error: describe(error)})
    }
  }

  /** Capture soon after a job exhausts its attempts (after graphile's batched failure write lands). */
  private scheduleCapture(): void {
    if (this.stopping || this.captureState.timer) return
    const delay = Math.max(200, this.config.failBatchDelayMs + 200)
    this.captureState.timer = setTimeout(() => {
      this.captureState.timer = undefined
      void this.capture('failure')
    }, delay)
    this.captureState.timer.unref()
  }

  /** One capture at a time per process; a request during a run triggers one more run. */
  private capture(reason: 'startup' | 'interval' | 'failure' | 'shutdown' | 'once'): Promise<void> {
    if (this.captureState.running) {
      this.captureState.again = true
      return this.captureState.running
    }
    const runOne = async (): Promise<void> => {
      const endTimer = this.metrics.dlqCaptureDuration.startTimer()
      try {
        const result = await captureExhausted(this.db, {exclude: this.uncapturable})
        endTimer()
        for (const failed of result.failed) {
          this.metrics.dlqCaptureFailures.inc()
          this.emit({
            type: 'error',
            where: 'dlq capture',
            error: `job ${failed.jobId} cannot be moved to the DLQ and stays in the jobs table: ${failed.error}`,
          })
        }
        this.counts.dlqCaptured += result.captured
        this.metrics.dlqLastCapture.set(Date.now() / 1000)
        for (const [task, count] of Object.entries(result.byTask)) this.metrics.dlqJobsAdded.inc({task}, count)
        if (result.captured > 0 || reason === 'startup' || reason === 'interval') {
          const size = await this.db.one(dlqSize, [])
          this.metrics.dlqSize.set(Number(size.count))
        }
        if (result.captured > 0)
          this.emit({
            type: 'dlq:capture',
            captured: result.captured,
            byTask: result.byTask,
            durationMs: result.durationMs,
            reason,
          })
      } catch (error) {
        endTimer()
        this.metrics.dlqCaptureFailures.inc()
        this.emit({type: 'error', where: 'dlq capture', error: describe(error)})
        if (reason === 'startup') throw error
      }
    }
    this.captureState.running = (async () => {
      try {
        do {
          this.captureState.again = false
          await runOne()
        } while (this.captureState.again && !this.stopping)
      } finally {
        this.captureState.running = undefined
      }
    })()
    return this.captureState.running
  }

  private async runLockCleanup(reason: 'startup' | 'interval'): Promise<void> {
    if (!this.cleanLocks) return
    const started = performance.now()
    try {
      const result = await this.cleanLocks(this.db, this.config)
      this.metrics.cleanupQueueLocksReleased.inc(result.queueLocks)
      this.metrics.cleanupJobLocksReleased.inc(result.jobLocks)
      if (result.queueLocks > 0) this.metrics.cleanupQueueLocksLastReleased.set(result.queueLocks)
      if (result.jobLocks > 0) this.metrics.cleanupJobLocksLastReleased.set(result.jobLocks)
      this.metrics.cleanupLastSuccess.set(Date.now() / 1000)
      if (result.queueLocks + result.jobLocks > 0 || reason === 'startup') {
        this.emit({
          type: 'locks:cleanup',
          queueLocks: result.queueLocks,
          jobLocks: result.jobLocks,
          durationMs: performance.now() - started,
          reason,
          details: result.details,
        })
      }
    } catch (error) {
      this.metrics.cleanupFailures.inc({operation: 'locks'})
      this.emit({type: 'error', where: 'lock cleanup', error: describe(error)})
    }
  }

  private startTimers(pools: RunningPool[], fence: (silentMs: number) => void): NodeJS.Timeout[] {
    const timers: NodeJS.Timeout[] = []
    // Self-fencing: others judge this worker dead once its heartbeat is older than the bound
    // (3 × interval, at least 30 s) and release its locks. Stop at half that, so its jobs are
    // no longer running when that happens (a network partition, a hung connection).
    const fenceAfterMs = this.fenceAfterMs
    timers.push(
      setInterval(
        () => {
          const silent = Math.max(...pools.map((p) => p.presence.silentForMs()))
          if (silent > fenceAfterMs) fence(silent)
        },
        Math.min(1000, this.config.heartbeatIntervalMs),
      ),
    )
    if (this.config.dlqIntervalMs !== null)
      timers.push(setInterval(() => void this.capture('interval'), this.config.dlqIntervalMs))
    if (this.cleanLocks && this.config.lockCleanupIntervalMs !== null) {
      timers.push(setInterval(() => void this.runLockCleanup('interval'), this.config.lockCleanupIntervalMs))
    }
    for (const timer of timers) timer.unref()
    return timers
  }

  private forceAll(pools: RunningPool[], reason: string): void {
    for (const pool of pools) {
      // graphile fails the running jobs (normal backoff) so they run again elsewhere.
      void Promise.resolve()
        .then(() => pool.workerPool.forcefulShutdown(`backfill worker: ${reason}`))
        .catch(() => undefined)
    }
  }

  private async shutdown(
    pools: RunningPool[],
    timers: NodeJS.Timeout[],
    started: number,
    options: {force?: boolean; reason?: string},
  ): Promise<WorkerSummary> {
    this.stopping = true
    for (const timer of timers) clearInterval(timer)
    if (this.captureState.timer) clearTimeout(this.captureState.timer)
    this.emit({type: 'worker:stopping', reason: options.reason ?? 'stop requested', force: this.forced})
    if (this.forced) this.forceAll(pools, options.reason ?? 'forced stop')
    // Graceful: stop fetching, hand back local-queue jobs, wait for running jobs, flush batches.
    const graceful = Promise.allSettled(pools.map(async (p) => p.runner.stop()))
    const timedOut = (await withTimeout(graceful, this.config.shutdownTimeoutMs)) === TIMED_OUT
    if (timedOut) {
      this.forced = true
      this.emit({
        type: 'worker:stopping',
        reason: `jobs still running after ${this.config.shutdownTimeoutMs} ms`,
        force: true,
      })
      this.forceAll(pools, 'shutdown timeout')
      await withTimeout(graceful, 5000)
    }
    await withTimeout(Promise.allSettled(pools.map(async (p) => p.runner.promise)), 5000)
    const forced = this.forced
    // graphile does not await its last completion writes; wait until nothing is checked out.
    await this.waitForIdlePool(5000)
    await this.captureState.running?.catch(() => undefined)
    let releasedJobLocks = 0
    let releasedQueueLocks = 0
    let lockedAfter = 0
    try {
      if (this.config.dlqIntervalMs !== null) await this.capture('shutdown')
      for (const pool of pools) {
        const released = await this.db.one(releaseOwnLocks, [pool.workerPool.id])
        releasedJobLocks += released.jobs
        releasedQueueLocks += released.queues
        lockedAfter += (await this.db.one(countLockedBy, [pool.workerPool.id])).count
      }
      this.metrics.shutdownLocksReleased.inc(releasedJobLocks + releasedQueueLocks)
    } catch (error) {
      this.emit({type: 'error', where: 'shutdown lock release', error: describe(error)})
    }
    for (const pool of pools) {
      await pool.presence.stop()
      this.metrics.workerActive.set({pool: pool.plan.role}, 0)
    }
    const summary: WorkerSummary = {
      poolIds: pools.map((p) => p.workerPool.id),
      jobs: {
        started: this.counts.started,
        succeeded: this.counts.succeeded,
        failed: this.counts.failed,
        permanent: this.counts.permanent,
      },
      dlqCaptured: this.counts.dlqCaptured,
      forced,
      releasedJobLocks,
      releasedQueueLocks,
      durationMs: performance.now() - started,
      ...(this.failure ? {failure: this.failure} : {}),
    }
    this.emit({
      type: 'worker:stop',
      durationMs: summary.durationMs,
      forced,
      releasedJobLocks,
      releasedQueueLocks,
      lockedAfter,
    })
    return summary
  }

  private async waitForIdlePool(limitMs: number): Promise<void> {
    const pool = this.db.pool
    const deadline = Date.now() + limitMs
    while (pool.totalCount - pool.idleCount > 0 && Date.now() < deadline) await sleep(10)
  }
}

async function defaultCleanLocks(
  db: Database,
  config: WorkerConfig,
): Promise<{queueLocks: number; jobLocks: number; details?: unknown}> {
  const {cleanLocks} = await import('../locks/clean.js')
  const result = await cleanLocks(db, {
    staleQueueLockTimeoutMs: config.staleQueueLockTimeoutMs,
    staleJobLockTimeoutMs: config.staleJobLockTimeoutMs,
    actor: 'backfill worker',
  })
  return {
    queueLocks: result.queueLocks,
    jobLocks: result.jobLocks,
    details: {released: result.released, skipped: result.skipped},
  }
}

function permanentFailure(error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error)
  const wrapped = new Error(`${PERMANENT_FAILURE_PREFIX}${message}`)
  if (error instanceof Error && error.stack)
    wrapped.stack = `${wrapped.message}\n${error.stack.split('\n').slice(1).join('\n')}`
  return wrapped
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** Half the default liveness bound others apply (max(30 s, 3 × interval); see locks/owners.ts). */
export function fenceAfter(heartbeatIntervalMs: number): number {
  return Math.max(15_000, 1.5 * heartbeatIntervalMs)
}

const TIMED_OUT = Symbol('timed out')

/**
 * Races a promise against a timer that keeps the event loop alive (an unref'd one would let
 * the process drain and exit with code 13 while graphile hangs), cleared once decided.
 */
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(() => resolve(TIMED_OUT), ms))),
    ])
  } finally {
    clearTimeout(timer)
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
