import {EventEmitter} from 'node:events'

import type {ParsedCronItem, Runner, TaskList, WorkerPool} from 'graphile-worker'

import type {Database} from '../db.js'
import {mapPgError} from '../pg-errors.js'
import {describeError} from './async.js'
import type {PoolPlan, WorkerConfig} from './config.js'
import {
  GRAPHILE_CONTRACT,
  type GraphileLogSink,
  graphilePoolOptions,
  holdLocalQueueRelease,
  interceptBreakingMigration,
} from './graphile-adapter.js'
import type {AdaptivePrefetch, LocalQueueHandle} from './prefetch.js'

export interface PoolInput {
  db: Database
  config: WorkerConfig
  plan: PoolPlan
  /** Tasks as the pool runs them (already instrumented). */
  tasks: TaskList
  sink: GraphileLogSink
}

/** Starts one long-running graphile pool (run()) and returns it with its pool id. */
export async function startGraphilePool(
  input: PoolInput & {
    cron: ParsedCronItem[] | undefined
    /** Drives the pool's local queue size (plan.adaptivePrefetch). */
    prefetch?: AdaptivePrefetch
    /** A breaking migration was announced somewhere in the database (graphile's reaction is disarmed). */
    onBreakingMigration: (migration: number) => void
    /**
     * graphile is shutting the pool down (a lost batch write, a slot that died, or our own
     * stop): the pool will not run jobs again, and its shutdown may never finish by itself.
     */
    onPoolShutdown: (reason: string) => void
  },
): Promise<{runner: Runner; workerPool: WorkerPool}> {
  const {run} = await import('graphile-worker')
  const events = new EventEmitter()
  let workerPool: WorkerPool | undefined
  events.on(GRAPHILE_CONTRACT.poolCreateEvent, (event: {workerPool: WorkerPool}) => {
    workerPool = event.workerPool
  })
  // Without a local queue each slot fetches for itself (the local queue's fetch errors are only logged).
  events.on(GRAPHILE_CONTRACT.getJobErrorEvent, (event: {error: unknown}) => input.sink.fetchFailed(event.error))
  events.on(GRAPHILE_CONTRACT.listenNotificationEvent, (event: {message: {channel: string; payload?: string}}) => {
    const migration = interceptBreakingMigration(event.message)
    if (migration !== undefined) input.onBreakingMigration(migration)
  })
  events.on(GRAPHILE_CONTRACT.poolFatalErrorEvent, ({error, action}: {error: unknown; action?: string}) =>
    input.onPoolShutdown(
      `graphile-worker could not record ${action === 'failJob' ? 'job failures' : 'job completions'} (${describeError(error)}) and is shutting its pool down`,
    ),
  )
  events.on(GRAPHILE_CONTRACT.poolGracefulShutdownEvent, ({message}: {message?: string}) =>
    input.onPoolShutdown(`graphile-worker is shutting its pool down: ${message ?? 'no reason given'}`),
  )
  holdLocalQueueRelease(events)
  const {prefetch} = input
  if (prefetch) {
    events.on(GRAPHILE_CONTRACT.localQueueInitEvent, ({localQueue}: {localQueue: LocalQueueHandle}) =>
      prefetch.attach(localQueue),
    )
    events.on(GRAPHILE_CONTRACT.localQueueGetJobsCompleteEvent, ({jobs}: {jobs: readonly unknown[]}) =>
      prefetch.fetched(jobs.length),
    )
    events.on(GRAPHILE_CONTRACT.localQueueSetModeEvent, ({newMode}: {newMode: string}) => {
      if (newMode === 'RELEASED') prefetch.detach()
    })
  }
  const options = await graphilePoolOptions({...input, events, localQueueSize: prefetch?.initialSize})
  const runner = await run({...options, parsedCronItems: input.cron ?? []}, input.tasks)
  if (!workerPool) {
    await runner.stop()
    throw new Error('graphile-worker did not report its pool')
  }
  return {runner, workerPool}
}

/**
 * One pass of graphile's runOnce: runs what is runnable now and resolves when the pool is
 * done. No batched writes: graphile's runOnce stops at the first empty fetch, and a serial
 * queue whose last completion is still batched looks locked (empty) to it.
 */
export async function runOncePass(input: PoolInput & {onPool: (workerPool: WorkerPool) => void}): Promise<void> {
  const {runOnce} = await import('graphile-worker')
  const events = new EventEmitter()
  events.on(GRAPHILE_CONTRACT.poolCreateEvent, ({workerPool}: {workerPool: WorkerPool}) => input.onPool(workerPool))
  // In once mode a slot whose fetch fails (say a policy refuses its task registration) just
  // stops, and graphile's pool then ends as if every job was done: collect those failures.
  const failures: unknown[] = []
  events.on(GRAPHILE_CONTRACT.workerStopEvent, ({error}: {error?: unknown}) => {
    if (error !== undefined) failures.push(error)
  })
  await runOnce(await graphilePoolOptions({...input, events, batchDelayMs: -1}), input.tasks)
  if (failures.length > 0) throw mapPgError(failures[0], {target: input.db.target, schema: input.db.quotedSchema})
}
