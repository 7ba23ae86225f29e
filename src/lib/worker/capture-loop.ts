import type {Database} from '../db.js'
import {captureExhausted} from '../dlq/capture.js'
import {dlqSize} from '../sql/worker.js'
import {describeError} from './async.js'
import type {WorkerEvent} from './events.js'
import type {WorkerMetrics} from './metrics.js'

export type CaptureReason = 'startup' | 'interval' | 'failure' | 'shutdown' | 'once'

/**
 * Moves exhausted jobs into the DLQ: on demand (startup, shutdown, once), on an interval,
 * and soon after a job exhausts its attempts. One capture at a time per process; a request
 * during a run triggers one more run.
 */
export class CaptureLoop {
  /** Jobs moved into the DLQ by this process. */
  captured = 0
  private readonly db: Database
  private readonly metrics: WorkerMetrics
  private readonly emit: (event: WorkerEvent) => void
  private readonly failBatchDelayMs: number
  /** Exhausted jobs the DLQ cannot hold (found by capture); skipped from then on, reported once. */
  private readonly uncapturable = new Set<string>()
  private running: Promise<void> | undefined
  private again = false
  private soon: NodeJS.Timeout | undefined
  private interval: NodeJS.Timeout | undefined
  private stopped = false

  constructor(
    db: Database,
    metrics: WorkerMetrics,
    emit: (event: WorkerEvent) => void,
    options: {failBatchDelayMs: number},
  ) {
    this.db = db
    this.metrics = metrics
    this.emit = emit
    this.failBatchDelayMs = options.failBatchDelayMs
  }

  /** Captures every intervalMs until stop(). */
  every(intervalMs: number): void {
    this.interval = setInterval(() => void this.run('interval'), intervalMs)
    this.interval.unref()
  }

  /** Capture soon after a job exhausts its attempts (after graphile's batched failure write lands). */
  schedule(): void {
    if (this.stopped || this.soon) return
    this.soon = setTimeout(
      () => {
        this.soon = undefined
        void this.run('failure')
      },
      Math.max(200, this.failBatchDelayMs + 200),
    )
    this.soon.unref()
  }

  /** No more interval or scheduled runs (explicit runs still work). */
  stop(): void {
    this.stopped = true
    clearInterval(this.interval)
    clearTimeout(this.soon)
    this.soon = undefined
  }

  /** Waits for a run under way, whatever its outcome. */
  async settled(): Promise<void> {
    await this.running?.catch(() => undefined)
  }

  /** A startup capture that fails throws (the worker must not start past exhausted jobs it cannot see). */
  run(reason: CaptureReason): Promise<void> {
    if (this.running) {
      this.again = true
      return this.running
    }
    this.running = (async () => {
      try {
        do {
          this.again = false
          await this.runOne(reason)
        } while (this.again && !this.stopped)
      } finally {
        this.running = undefined
      }
    })()
    return this.running
  }

  private async runOne(reason: CaptureReason): Promise<void> {
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
      this.captured += result.captured
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
      this.emit({type: 'error', where: 'dlq capture', error: describeError(error)})
      if (reason === 'startup') throw error
    }
  }
}
