import type {Database} from '../db.js'
import {describeError} from './async.js'
import type {WorkerConfig} from './config.js'
import type {WorkerEvent} from './events.js'
import type {WorkerMetrics} from './metrics.js'

export interface CleanLocksResult {
  queueLocks: number
  jobLocks: number
  details?: unknown
}

export type CleanLocksFunction = (db: Database, config: WorkerConfig) => Promise<CleanLocksResult>

/**
 * The worker's stale-lock cleanup, at startup and on an interval: dead owners at once,
 * unknown owners past the stale timeouts, live owners never (the locks module decides).
 */
export class LockCleanup {
  private readonly db: Database
  private readonly config: WorkerConfig
  private readonly metrics: WorkerMetrics
  private readonly emit: (event: WorkerEvent) => void
  private readonly clean: CleanLocksFunction
  private interval: NodeJS.Timeout | undefined

  constructor(
    db: Database,
    config: WorkerConfig,
    metrics: WorkerMetrics,
    emit: (event: WorkerEvent) => void,
    clean: CleanLocksFunction = defaultCleanLocks,
  ) {
    this.db = db
    this.config = config
    this.metrics = metrics
    this.emit = emit
    this.clean = clean
  }

  every(intervalMs: number): void {
    this.interval = setInterval(() => void this.run('interval'), intervalMs)
    this.interval.unref()
  }

  stop(): void {
    clearInterval(this.interval)
  }

  /** Never throws: a failed cleanup is reported and counted. */
  async run(reason: 'startup' | 'interval'): Promise<void> {
    const started = performance.now()
    try {
      const result = await this.clean(this.db, this.config)
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
      this.emit({type: 'error', where: 'lock cleanup', error: describeError(error)})
    }
  }
}

export async function defaultCleanLocks(db: Database, config: WorkerConfig): Promise<CleanLocksResult> {
  const {cleanLocks} = await import('../locks/clean.js')
  const result = await cleanLocks(db, {
    staleQueueLockTimeoutMs: config.staleQueueLockTimeoutMs,
    staleJobLockTimeoutMs: config.staleJobLockTimeoutMs,
    ...(config.rustHeartbeatTimeoutMs === undefined ? {} : {rustHeartbeatTimeoutMs: config.rustHeartbeatTimeoutMs}),
    actor: 'backfill worker',
  })
  return {
    queueLocks: result.queueLocks,
    jobLocks: result.jobLocks,
    details: {released: result.released, skipped: result.skipped},
  }
}
