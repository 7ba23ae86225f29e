import {EventEmitter} from 'node:events'
import {sleep} from '../sleep.js'

import type {ParsedCronItem, Runner, TaskList, WorkerPool} from 'graphile-worker'

import type {Database} from '../db.js'
import {BULK_FLAG} from '../jobs/priority.js'
import {NotMigratedError} from '../errors.js'
import {isAmbiguousOutcome} from '../pg-errors.js'
import {requireSession} from '../pooler.js'
import {requireMigrated} from '../schema/inspect.js'
import {migrate} from '../schema/migrate.js'
import {pruneWorkers} from '../sql/worker.js'
import {BACKFILL_VERSION} from '../version.js'
import {describeError, TIMED_OUT, withTimeout} from './async.js'
import {CaptureLoop} from './capture-loop.js'
import {
  planPools,
  type PoolPlan,
  resolveWorkerConfig,
  totalConcurrency,
  type WorkerConfig,
  type WorkerConfigInput,
} from './config.js'
import type {PoolRole, WorkerEvent} from './events.js'
import {fenceAfter, watchHeartbeats} from './fencing.js'
import type {GraphileLogSink} from './graphile-adapter.js'
import type {WorkerHealthState} from './health.js'
import {PresenceGate, TaskInstrumentation} from './instrumentation.js'
import {AdaptivePrefetch} from './prefetch.js'
import {type CleanLocksResult, LockCleanup} from './lock-cleanup.js'
import {releasePoolLocks} from './lock-release.js'
import {createWorkerMetrics, type WorkerMetrics} from './metrics.js'
import {MigrationWatch} from './migration-watch.js'
import {runOncePass, startGraphilePool} from './pools.js'
import {WorkerPresence} from './presence.js'

export {fenceAfter} from './fencing.js'

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
  cleanLocks?: false | ((db: Database, config: WorkerConfig) => Promise<CleanLocksResult>)
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
  /** Jobs still locked by its pools after that release, counted; null when it could not be checked. */
  lockedAfter: number | null
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

/** A graphile pool this worker ran: what the way out needs. */
interface PoolMember {
  poolId: string
  role: PoolRole
  /** Missing when its presence could not be started (once mode runs on regardless). */
  presence: WorkerPresence | undefined
}

interface RunningPool extends PoolMember {
  plan: PoolPlan
  runner: Runner
  workerPool: WorkerPool
  presence: WorkerPresence
  /** The pool's adaptive prefetch (shared pool with a local queue). */
  prefetch: AdaptivePrefetch | undefined
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
 * and a shutdown that leaves no job locked by this worker. This module is the lifecycle;
 * each other job lives in its own module (graphile-adapter, instrumentation, capture-loop,
 * lock-cleanup, lock-release, fencing, presence).
 */
export class WorkerRunner {
  readonly config: WorkerConfig
  readonly metrics: WorkerMetrics
  private readonly db: Database
  private readonly tasks: TaskList
  private readonly cron: ParsedCronItem[] | undefined
  private readonly emitter = new EventEmitter()
  private readonly fenceAfterMs: number
  private readonly capture: CaptureLoop
  private readonly lockCleanup: LockCleanup | undefined
  private readonly instrumentation: TaskInstrumentation
  private readonly logSink: GraphileLogSink
  private readonly migrations: MigrationWatch
  private stopping = false
  /** The running pools' presences (for healthState); empty before start() and after the stop. */
  private presences: WorkerPresence[] = []
  private phase: WorkerHealthState['phase'] = 'starting'
  private forced = false
  private failure: string | undefined
  /** Jobs whose handler succeeded but whose completion graphile could not write (recorded on the way out). */
  private readonly lostCompletions = new Set<string>()
  /** Set by start() once it can stop the worker; a failure found earlier stops it right then. */
  private requestStop: (() => void) | undefined

  constructor(options: WorkerRunnerOptions) {
    this.db = options.db
    this.tasks = options.tasks
    this.cron = options.cron
    this.config = resolveWorkerConfig(options.config)
    this.metrics = options.metrics ?? createWorkerMetrics()
    this.fenceAfterMs = options.fenceAfterMs ?? fenceAfter(this.config.heartbeatIntervalMs)
    if (options.onEvent) this.emitter.on('event', options.onEvent)
    const emit = (event: WorkerEvent): void => this.emit(event)
    this.capture = new CaptureLoop(this.db, this.metrics, emit, {failBatchDelayMs: this.config.failBatchDelayMs})
    this.lockCleanup =
      options.cleanLocks === false
        ? undefined
        : new LockCleanup(this.db, this.config, this.metrics, emit, options.cleanLocks)
    this.instrumentation = new TaskInstrumentation(this.db, this.metrics, {
      emit,
      listening: () => this.emitter.listenerCount('event') > 0,
      onExhausted: () => {
        if (this.dlq) this.capture.schedule()
      },
    })
    this.migrations = new MigrationWatch(this.db, emit, (failure) => {
      if (this.stopping) return
      this.failure ??= failure
      this.emit({type: 'error', where: 'schema', error: failure})
      this.requestStop?.()
    })
    this.logSink = {
      log: (level, message) => this.emit({type: 'log', level, message}),
      fetchFailed: (error) => this.fetchFailed(error),
      completionsLost: (jobIds) => {
        for (const id of jobIds) this.lostCompletions.add(id)
      },
    }
  }

  /** What the Kubernetes probes need (see health.ts). */
  healthState(): WorkerHealthState {
    const phase = this.stopping && this.phase !== 'stopped' ? 'stopping' : this.phase
    return {
      phase,
      heartbeatSilentMs: this.presences.length > 0 ? Math.max(...this.presences.map((p) => p.silentForMs())) : null,
      connected: this.presences.length > 0 && this.presences.every((p) => p.connected),
      fenceAfterMs: this.fenceAfterMs,
    }
  }

  private get dlq(): boolean {
    return this.config.dlqIntervalMs !== null
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
      this.stopping = true
      await Promise.allSettled(pools.map(async (p) => p.runner.stop()))
      throw error
    }
    this.emitStart(pools, false)
    this.presences = pools.map((p) => p.presence)
    this.phase = 'running'
    const stopWatching = watchHeartbeats(() => pools.map((p) => p.presence), {
      fenceAfterMs: this.fenceAfterMs,
      heartbeatIntervalMs: this.config.heartbeatIntervalMs,
      onSilent: (silentMs) => {
        if (this.stopping) return
        this.failure ??= `lost contact with the database: no heartbeat recorded for ${Math.round(silentMs / 1000)} s; stopping before other workers take this worker's jobs over`
        this.emit({type: 'error', where: 'liveness', error: this.failure})
        this.metrics.fenced.inc()
        void stop({force: true, reason: this.failure}).catch(() => undefined)
      },
    })
    if (this.config.dlqIntervalMs !== null) this.capture.every(this.config.dlqIntervalMs)
    if (this.config.lockCleanupIntervalMs !== null) this.lockCleanup?.every(this.config.lockCleanupIntervalMs)
    const stopLoops = (): void => {
      stopWatching()
      this.capture.stop()
      this.lockCleanup?.stop()
    }

    let stopPromise: Promise<WorkerSummary> | undefined
    let settle!: (summary: WorkerSummary) => void
    let fail!: (error: unknown) => void
    const done = new Promise<WorkerSummary>((resolve, reject) => {
      settle = resolve
      fail = reject
    })
    const stop = (options: {force?: boolean; reason?: string} = {}): Promise<WorkerSummary> => {
      if (options.force) this.forced = true
      if (stopPromise && options.force) forceAll(pools, options.reason ?? 'forced stop')
      stopPromise ??= this.shutdown(pools, stopLoops, started, options).then(
        (summary) => {
          this.phase = 'stopped'
          this.presences = []
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
    // A pool that dies on its own (e.g. graphile's shutdown after a lost batch write) stops the whole worker.
    for (const pool of pools) {
      pool.runner.promise.then(
        () => this.poolEnded(pool, `pool ${pool.poolId} stopped on its own`),
        (error: unknown) => {
          this.emit({type: 'error', where: `pool ${pool.poolId}`, error: describeError(error)})
          this.poolEnded(pool, `pool ${pool.poolId} failed: ${describeError(error)}`)
        },
      )
    }
    return {poolIds: pools.map((p) => p.poolId), stop, done}
  }

  /** The crate's process_available_jobs, done properly: capture, run what is runnable now, capture again. */
  async runOnce(): Promise<WorkerSummary> {
    const started = performance.now()
    await this.prepare()
    // No local queue: graphile's runOnce stops at the first empty fetch.
    const plan: PoolPlan = {
      role: 'shared',
      concurrency: this.config.concurrency,
      forbiddenFlags: null,
      localQueueSize: 0,
      adaptivePrefetch: false,
    }
    const members: PoolMember[] = []
    let presenceFailure: unknown
    let passFailure: unknown
    // Even unbatched, graphile fetches a slot's next job before the previous completion has
    // committed, so a serial queue's next job can look locked and end a pass early: passes
    // repeat until one starts nothing. Each pass is a new graphile pool with a presence of its own.
    for (let pass = 1; pass <= 10_000 && presenceFailure === undefined; pass++) {
      const startedBefore = this.instrumentation.counts.started
      const gate = new PresenceGate()
      let presence: Promise<unknown> = Promise.resolve()
      const onPool = (workerPool: WorkerPool): void => {
        const member: PoolMember = {poolId: workerPool.id, role: plan.role, presence: undefined}
        members.push(member)
        presence = this.startPresence(member.poolId, plan).then(
          (started) => {
            member.presence = started
            gate.open()
          },
          (error: unknown) => {
            presenceFailure = error
            gate.fail(error)
          },
        )
        if (members.length === 1) this.emitStart([{...member, plan}], true)
      }
      const tasks = this.instrumentation.wrap(this.tasks, plan.role, gate)
      try {
        await runOncePass({db: this.db, config: this.config, plan, tasks, sink: this.logSink, onPool})
      } catch (error) {
        passFailure = error
      } finally {
        await presence
      }
      if (passFailure !== undefined || this.instrumentation.counts.started === startedBefore) break
    }
    if (passFailure !== undefined && presenceFailure === undefined) {
      // A slot could not fetch: jobs may be left unprocessed, so this run failed.
      await this.finish(members, started, false, 'once')
      throw passFailure
    }
    if (presenceFailure !== undefined) {
      // Like start(): a worker nobody can prove alive must not run jobs; release and report.
      await this.finish(members, started, false, 'once')
      throw presenceFailure
    }
    return this.finish(members, started, false, 'once')
  }

  on(listener: (event: WorkerEvent) => void): () => void {
    this.emitter.on('event', listener)
    return () => this.emitter.off('event', listener)
  }

  private emit(event: WorkerEvent): void {
    this.emitter.emit('event', event)
  }

  private emitStart(pools: (PoolMember & {plan: PoolPlan})[], once: boolean): void {
    this.emit({
      type: 'worker:start',
      schema: this.db.schema,
      database: this.db.target.display,
      tasks: Object.keys(this.tasks).sort(),
      pools: pools.map((p) => ({...p.plan, poolId: p.poolId})),
      dlq: this.dlq,
      once,
    })
  }

  /** Schema, then the startup capture and cleanup, before any graphile pool touches a job. */
  private async prepare(): Promise<void> {
    await requireSession(
      this.db.target,
      'backfill worker',
      'LISTEN for new jobs, a presence session proving it alive, session advisory locks',
    )
    if (this.config.migrate) await migrate(this.db)
    // Also after migrating: a role that may migrate may still not see the jobs (row security).
    const inspection = await requireMigrated(this.db, {dlq: true})
    // graphile's run() applies pending migrations itself, whatever --no-migrate says, and
    // without migrate's checks (e.g. a breaking 19 under Rust workers that reject it).
    const pending = inspection.graphile.pending
    if (!this.config.migrate && pending.length > 0) {
      const flag = this.db.schema === 'graphile_worker' ? '' : ` --schema ${this.db.schema}`
      throw new NotMigratedError(
        `graphile-worker migrations ${pending.join(', ')} are pending in schema "${this.db.schema}": graphile-worker would apply them when the worker starts, and --no-migrate requires the schema to be up to date`,
        {suggestions: [`run: backfill migrate${flag} (backfill schema status says what it would do)`]},
      )
    }
    await this.migrations.start()
    if (this.dlq) await this.capture.run('startup')
    await this.lockCleanup?.run('startup')
    await this.db
      .exec(pruneWorkers, [7 * 86_400])
      .catch((error: unknown) => this.emit({type: 'error', where: 'registry prune', error: describeError(error)}))
  }

  private async startPool(plan: PoolPlan, cron: ParsedCronItem[] | undefined): Promise<RunningPool> {
    // graphile starts fetching at once; jobs wait for the pool's presence.
    const gate = new PresenceGate()
    const prefetch = plan.adaptivePrefetch
      ? new AdaptivePrefetch({concurrency: plan.concurrency, cap: plan.localQueueSize}, (state) =>
          this.metrics.prefetchSize.set({pool: plan.role}, state.size),
        )
      : undefined
    if (prefetch) this.metrics.prefetchSize.set({pool: plan.role}, prefetch.initialSize)
    else if (plan.localQueueSize > 0) this.metrics.prefetchSize.set({pool: plan.role}, plan.localQueueSize)
    const {runner, workerPool} = await startGraphilePool({
      db: this.db,
      config: this.config,
      plan,
      cron,
      prefetch,
      tasks: this.instrumentation.wrap(this.tasks, plan.role, gate, prefetch),
      sink: this.logSink,
      onBreakingMigration: (migration) => {
        if (!this.stopping) this.migrations.announced(migration)
      },
      onPoolShutdown: (reason) => this.poolShuttingDown(reason),
    })
    let presence: WorkerPresence
    try {
      presence = await this.startPresence(workerPool.id, plan, prefetch)
    } catch (error) {
      gate.fail(error)
      this.stopping = true
      await runner.stop().catch(() => undefined)
      throw error
    }
    gate.open()
    return {plan, runner, workerPool, poolId: workerPool.id, role: plan.role, presence, prefetch}
  }

  private async startPresence(poolId: string, plan: PoolPlan, prefetch?: AdaptivePrefetch): Promise<WorkerPresence> {
    const presence = new WorkerPresence(this.db, {
      poolId,
      heartbeatIntervalMs: this.config.heartbeatIntervalMs,
      version: BACKFILL_VERSION,
      metadata: {
        role: plan.role,
        concurrency: plan.concurrency,
        tasks: Object.keys(this.tasks).sort(),
        ...(plan.localQueueSize > 0 ? {prefetchSize: prefetch?.state().size ?? plan.localQueueSize} : {}),
      },
      // status shows each pool's current prefetch (as of its last heartbeat).
      ...(prefetch ? {liveFacts: () => ({prefetchSize: prefetch.state().size})} : {}),
      onError: (error) => this.emit({type: 'error', where: `presence ${poolId}`, error: describeError(error)}),
    })
    try {
      await presence.start()
    } catch (error) {
      // A worker nobody can prove alive would hold "unknown" locks that cleaners release by
      // age: refuse to run rather than risk running its jobs twice.
      await presence.stop().catch(() => undefined)
      throw error
    }
    this.metrics.workerActive.set({pool: plan.role}, 1)
    return presence
  }

  /**
   * graphile began shutting a pool down by itself (we set stopping before any stop of ours):
   * after a lost completion or failure write, or a slot that died. That pool runs no job again,
   * yet it keeps its prefetched and unconfirmed jobs locked under a pool id whose presence
   * stays live, and graphile 0.17.3's own shutdown can hang for good after a lost write (its
   * batcher's release waits forever). So the worker stops at once: its stop is bounded by the
   * shutdown timeout, records the lost completions and releases everything else.
   */
  private poolShuttingDown(reason: string): void {
    if (this.stopping) return
    if (this.failure === undefined) {
      this.failure = `${reason}; stopping so that this worker's locks are released (restart the worker)`
      this.emit({type: 'error', where: 'pool', error: this.failure})
    }
    this.requestStop?.()
  }

  private poolEnded(pool: RunningPool, failure: string): void {
    if (this.stopping) return
    // The fallback for a pool that ended without telling us first (poolShuttingDown handles a
    // fatal error graphile announces, e.g. a lost batch write): stop with its reason.
    this.failure ??= failure
    this.requestStop?.()
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
    this.failure = `lost the database connection while fetching jobs (${describeError(error)}); stopping so that jobs the fetch may have locked are released (restart the worker)`
    this.emit({type: 'error', where: 'pool', error: this.failure})
    this.requestStop?.()
  }

  private async shutdown(
    pools: RunningPool[],
    stopLoops: () => void,
    started: number,
    options: {force?: boolean; reason?: string},
  ): Promise<WorkerSummary> {
    this.stopping = true
    stopLoops()
    this.emit({type: 'worker:stopping', reason: options.reason ?? 'stop requested', force: this.forced})
    if (this.forced) forceAll(pools, options.reason ?? 'forced stop')
    // Graceful: stop fetching, hand back local-queue jobs, wait for running jobs, flush batches.
    const graceful = Promise.allSettled(pools.map(async (p) => p.runner.stop()))
    if ((await withTimeout(graceful, this.config.shutdownTimeoutMs)) === TIMED_OUT) {
      this.forced = true
      this.emit({
        type: 'worker:stopping',
        reason: `jobs still running after ${this.config.shutdownTimeoutMs} ms`,
        force: true,
      })
      forceAll(pools, 'shutdown timeout')
      await withTimeout(graceful, 5000)
    }
    await withTimeout(Promise.allSettled(pools.map(async (p) => p.runner.promise)), 5000)
    const forced = this.forced
    // graphile does not await its last completion writes; wait until nothing is checked out.
    await this.waitForIdlePool(5000)
    return this.finish(pools, started, forced, 'shutdown')
  }

  /**
   * The one way out, for start() and runOnce(): a last capture, release what the pools still
   * hold, end their presence, then the summary and the worker:stop event.
   */
  private async finish(
    pools: readonly PoolMember[],
    started: number,
    forced: boolean,
    reason: 'shutdown' | 'once',
  ): Promise<WorkerSummary> {
    this.stopping = true
    this.capture.stop()
    await this.capture.settled()
    if (this.dlq) await this.capture.run(reason)
    const release = await releasePoolLocks(
      this.db,
      pools.map((p) => p.poolId),
      {lostCompletions: [...this.lostCompletions]},
    )
    if (release.error) this.emit({type: 'error', where: 'shutdown lock release', error: release.error})
    if (this.lostCompletions.size > 0)
      this.emit({
        type: 'log',
        level: 'warning',
        message: `recorded ${release.recordedCompletions} of ${this.lostCompletions.size} job completion(s) graphile-worker could not write (the rest had been written, or stay locked with everything else when the release failed)`,
      })
    this.metrics.shutdownLocksReleased.inc(release.releasedJobLocks + release.releasedQueueLocks)
    for (const pool of pools) {
      await pool.presence?.stop()
      this.metrics.workerActive.set({pool: pool.role}, 0)
    }
    const counts = this.instrumentation.counts
    const summary: WorkerSummary = {
      poolIds: pools.map((p) => p.poolId),
      jobs: {started: counts.started, succeeded: counts.succeeded, failed: counts.failed, permanent: counts.permanent},
      dlqCaptured: this.capture.captured,
      forced,
      releasedJobLocks: release.releasedJobLocks,
      releasedQueueLocks: release.releasedQueueLocks,
      lockedAfter: release.lockedAfter,
      durationMs: performance.now() - started,
      ...(this.failure ? {failure: this.failure} : {}),
    }
    this.emit({
      type: 'worker:stop',
      durationMs: summary.durationMs,
      forced,
      releasedJobLocks: release.releasedJobLocks,
      releasedQueueLocks: release.releasedQueueLocks,
      lockedAfter: release.lockedAfter,
      ...(release.error ? {lockCheckError: release.error} : {}),
    })
    return summary
  }

  private async waitForIdlePool(limitMs: number): Promise<void> {
    const pool = this.db.pool
    const deadline = Date.now() + limitMs
    while (pool.totalCount - pool.idleCount > 0 && Date.now() < deadline) await sleep(10)
  }
}

function forceAll(pools: readonly RunningPool[], reason: string): void {
  for (const pool of pools) {
    // graphile fails the running jobs (normal backoff) so they run again elsewhere.
    void Promise.resolve()
      .then(() => pool.workerPool.forcefulShutdown(`backfill worker: ${reason}`))
      .catch(() => undefined)
  }
}
