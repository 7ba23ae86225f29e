import type {EventEmitter} from 'node:events'

import type {RunnerOptions} from 'graphile-worker'

import type {Database} from '../db.js'
import type {PoolPlan, WorkerConfig} from './config.js'

/**
 * What the worker relies on in graphile-worker beyond its typed API: event names and log
 * text. test/unit/graphile-contract.test.ts reads the installed graphile-worker and fails
 * when any of these is gone, so an upgrade cannot silently disable a safety.
 */
export const GRAPHILE_CONTRACT = {
  /**
   * LocalQueue._fetch logs this when a batch fetch fails and emits no event: the only signal
   * that a fetch whose connection broke may have locked jobs the pool never received.
   */
  localQueueFetchErrorLog: 'Error occurred fetching jobs',
  /** Without a local queue each slot fetches for itself and reports failures by this event. */
  getJobErrorEvent: 'worker:getJob:error',
  /** A slot ended; `error` is set when it failed (in once mode its fetch errors end it). */
  workerStopEvent: 'worker:stop',
  /** Emitted synchronously with the new pool, before any slot starts. */
  poolCreateEvent: 'pool:create',
  /** Every pool LISTENs on this database-wide channel; a breaking-migration notice names no schema. */
  migrateChannel: 'worker:migrate',
  /** Emitted with the notification object itself, before graphile acts on it. */
  listenNotificationEvent: 'pool:listen:notification',
  /** A pool's LocalQueue announces itself (the instance) and each mode change by these events. */
  localQueueInitEvent: 'localQueue:init',
  localQueueSetModeEvent: 'localQueue:setMode',
  /**
   * Adaptive prefetch (prefetch.ts) drives this LocalQueue instance field: each fetch reads it
   * as its batch size, and again once its query returned (fetched the maximum?); exactly two
   * reads per fetch, around this event, emitted between them.
   */
  localQueueBatchSizeField: 'getJobBatchSize',
  localQueueGetJobsCompleteEvent: 'localQueue:getJobs:complete',
  /** failJobs' backoff: the next run is exp(min(attempts, 10)) seconds after the failure. */
  retryBackoffSql: 'exp(least(attempts, 10))',
  /**
   * A batched completion or failure write failed: graphile emits this (with `action`
   * completeJob / failJob), gives up on those jobs (its batch retry loop rethrows at once) and
   * starts shutting the pool down by itself: a shutdown that can hang for good (its batcher's
   * release waits forever once a write failed and later ones settled).
   */
  poolFatalErrorEvent: 'pool:fatalError',
  /**
   * Logged by the pool's logger right after that event for completions, with the batch's jobs
   * in meta.jobs and the event's error object as meta.fatalError (graphileLogFactory binds the two).
   */
  completeJobsFatalLog: 'Failed to complete jobs ',
  /** Emitted whenever a pool's graceful shutdown starts, whoever started it. */
  poolGracefulShutdownEvent: 'pool:gracefulShutdown',
  /** graphile's longest prepared statement name prefix (resetLockedAt, `<prefix><schema>`). */
  longestStatementNamePrefix: 'clear_stale_locksN/',
} as const

/**
 * graphile names its prepared statements `<name>/<schema>` and node-postgres prints a warning
 * on stderr at every use of a name over 63 characters (the server keeps 63 bytes): for such
 * schema names graphile runs its statements unprepared instead.
 */
export function graphileNamesFit(schema: string): boolean {
  return Buffer.byteLength(`${GRAPHILE_CONTRACT.longestStatementNamePrefix}${schema}`) <= 63
}

/** When graphile runs a failed job again: exp(min(attempts, 10)) s after the failure write. */
export function retryDelayMs(attempts: number): number {
  return Math.round(Math.exp(Math.min(attempts, 10)) * 1000)
}

/**
 * graphile-worker 0.17.3 shuts a pool down on any breaking-migration notice in the database,
 * whichever schema was migrated (migration 1 of a brand-new schema counts). The notice reaches
 * `pool:listen:notification` first, as the very object graphile then reads: clearing its
 * `breaking` flag there keeps the pool running, and the caller checks its own schema instead.
 * Returns the announced migration number, or undefined for any other notice.
 */
export function interceptBreakingMigration(message: {
  channel: string
  payload?: string | undefined
}): number | undefined {
  if (message.channel !== GRAPHILE_CONTRACT.migrateChannel) return undefined
  let payload: unknown
  try {
    payload = JSON.parse(message.payload ?? '')
  } catch {
    return undefined
  }
  if (typeof payload !== 'object' || payload === null || !(payload as {breaking?: unknown}).breaking) return undefined
  message.payload = JSON.stringify({...payload, breaking: false})
  return Number((payload as {migrationNumber?: unknown}).migrationNumber)
}

/** What the worker uses of graphile's LocalQueue instance beyond its typed API. */
interface LocalQueueInternals {
  background(promise: Promise<void>): void
}

/**
 * Works around a graphile-worker 0.17.3 LocalQueue bug. Releasing a local queue that holds
 * prefetched jobs (WAITING mode) sets RELEASED first, then returns the jobs through
 * background(), which refuses new work once RELEASED with nothing else in the background
 * ("Cannot background something when the queue is already released"). The return query runs
 * anyway, untracked (its failure becomes an unhandled rejection), and the pool's clean shutdown
 * fails: "Deactivation failed: AggregateError", "Error occurred during graceful shutdown", then a
 * forceful shutdown. Holding one background task of our own from the queue's creation until its
 * RELEASED mode is set keeps the count above zero at that moment, so graphile tracks the return
 * as it intends, and its release finishes when the return does.
 */
export function holdLocalQueueRelease(events: EventEmitter): void {
  let letGo: (() => void) | undefined
  events.on(GRAPHILE_CONTRACT.localQueueInitEvent, ({localQueue}: {localQueue: Partial<LocalQueueInternals>}) => {
    if (typeof localQueue.background !== 'function') return
    localQueue.background(new Promise<void>((resolve) => (letGo = resolve)))
  })
  events.on(GRAPHILE_CONTRACT.localQueueSetModeEvent, ({newMode}: {newMode: string}) => {
    if (newMode !== 'RELEASED') return
    letGo?.()
    letGo = undefined
  })
}

export type GraphileLogLevel = 'error' | 'warning' | 'info' | 'debug'

export interface GraphileLogSink {
  /** A graphile log line worth showing (per-job success/failure lines are dropped: ours say more). */
  log(level: GraphileLogLevel, message: string): void
  /** A fetch failed (from the log line or the event); the error decides whether that is ambiguous. */
  fetchFailed(error: unknown): void
  /** graphile could not write these jobs' completion (their handlers succeeded): ids as graphile holds them. */
  completionsLost(jobIds: string[]): void
}

/** The scope graphile's Logger hands its log factory (job and worker loggers add to the pool's). */
interface GraphileLogScope {
  label?: unknown
  workerId?: unknown
  taskIdentifier?: unknown
  jobId?: unknown
}

/**
 * The log factory graphile's Logger calls for each scope: job lines dropped, fetch failures
 * reported, lost completions reported. The jobs of a lost completion batch come only from the
 * log line (the pool:fatalError event before it carries no jobs), and deleting jobs on the
 * strength of a log line must not be spoofable: a task's helpers.logger can print any message
 * with any meta. So the line counts only when it comes from the pool's own logger (no job or
 * worker scope) and its meta.fatalError is the very error object this pool's pool:fatalError
 * (completeJob) announced just before; graphile emits the event and logs synchronously, one
 * after the other, so nothing runs in between.
 */
export function graphileLogFactory(sink: GraphileLogSink, events: EventEmitter) {
  const none = Symbol('none')
  let lostBatchError: unknown = none
  events.on(GRAPHILE_CONTRACT.poolFatalErrorEvent, ({error, action}: {error: unknown; action?: string}) => {
    if (action === 'completeJob') lostBatchError = error
  })
  return (scope: GraphileLogScope) => {
    const poolScope = scope.jobId === undefined && scope.workerId === undefined && scope.label === undefined
    return (
      level: string,
      message: string,
      meta?: {error?: unknown; success?: unknown; failure?: unknown; jobs?: unknown; [key: string]: unknown},
    ): void => {
      // graphile's per-job lines duplicate our own job events; it marks them in meta.
      if (meta?.success === true || meta?.failure === true) return
      // LocalQueue logs with the pool's logger too; a task's line with this text stops nothing.
      if (poolScope && message.startsWith(GRAPHILE_CONTRACT.localQueueFetchErrorLog)) sink.fetchFailed(meta?.error)
      if (
        poolScope &&
        message.startsWith(GRAPHILE_CONTRACT.completeJobsFatalLog) &&
        lostBatchError !== none &&
        meta !== undefined &&
        meta.fatalError === lostBatchError &&
        Array.isArray(meta.jobs)
      ) {
        lostBatchError = none
        sink.completionsLost(
          (meta.jobs as {id?: unknown}[]).map((job) => String(job?.id)).filter((id) => id !== 'undefined'),
        )
      }
      sink.log(level === 'error' || level === 'warning' || level === 'info' ? level : 'debug', message)
    }
  }
}

export interface PoolOptionsInput {
  db: Database
  config: WorkerConfig
  plan: PoolPlan
  /** The pool's own emitter (graphile's `events`), one per pool so events name one pool. */
  events: EventEmitter
  sink: GraphileLogSink
  /** Overrides the configured completion/failure batch delay, as given (-1 = graphile's unbatched writes). */
  batchDelayMs?: number
  /** The local queue's initial size when adaptive prefetch drives it (else plan.localQueueSize). */
  localQueueSize?: number | undefined
}

/**
 * The configured batch delay as graphile gets it: -1 (write each at once) becomes 0 (no added
 * delay: what completes in the same tick shares a write). graphile-worker 0.17.3's unbatched
 * path does not await its completion and failure writes: a lost one is an unhandled rejection,
 * with no event and no log line, and the job stays locked under the live pool (then runs again
 * once released). Only its batcher reports a lost write (pool:fatalError, the jobs in its log
 * line), which is what the worker recovers from. runOncePass asks for -1 explicitly.
 */
export function throughBatcher(delayMs: number): number {
  return Math.max(0, delayMs)
}

/** graphile-worker options for one pool of ours (run() and runOnce() take the same shape). */
export async function graphilePoolOptions(input: PoolOptionsInput): Promise<RunnerOptions> {
  const {Logger} = await import('graphile-worker')
  const {db, config, plan} = input
  const logFactory = graphileLogFactory(input.sink, input.events)
  return {
    pgPool: db.pool,
    schema: db.schema,
    concurrency: plan.concurrency,
    pollInterval: config.pollIntervalMs,
    noHandleSignals: true,
    noPreparedStatements: !config.preparedStatements || !graphileNamesFit(db.schema),
    forbiddenFlags: plan.forbiddenFlags,
    events: input.events as RunnerOptions['events'],
    logger: new Logger(logFactory),
    preset: {
      worker: {
        ...(plan.localQueueSize > 0 ? {localQueue: {size: input.localQueueSize ?? plan.localQueueSize}} : {}),
        completeJobBatchDelay: input.batchDelayMs ?? throughBatcher(config.completeBatchDelayMs),
        failJobBatchDelay: input.batchDelayMs ?? throughBatcher(config.failBatchDelayMs),
        // Tasks see helpers.abortSignal shortly before the shutdown timeout aborts them.
        gracefulShutdownAbortTimeout: Math.max(0, Math.floor(config.shutdownTimeoutMs * 0.8)),
      },
    },
  }
}
