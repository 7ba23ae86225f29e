import {Counter, Gauge, Histogram, Registry} from 'prom-client'

/**
 * The worker's Prometheus metrics, on a registry of its own so an application can serve it
 * from its own HTTP server (`registry.metrics()`). Names follow the Rust crate where the
 * meaning is the same. Labels are bounded: task identifiers (the loaded task list), pool
 * role, never a job key or a serial queue name.
 */
export interface WorkerMetrics {
  registry: Registry
  /** The plain counters behind jobsStarted/jobsCompleted for one task (the task wrapper increments them). */
  jobCountCell(task: string): JobCountCell
  workerActive: Gauge<'pool'>
  jobsStarted: Counter<'task'>
  jobsCompleted: Counter<'task'>
  jobsFailed: Counter<'task' | 'outcome'>
  jobDuration: Histogram<'task' | 'result'>
  dlqJobsAdded: Counter<'task'>
  dlqSize: Gauge
  dlqCaptureDuration: Histogram
  dlqLastCapture: Gauge
  dlqCaptureFailures: Counter
  cleanupQueueLocksReleased: Counter
  cleanupJobLocksReleased: Counter
  cleanupQueueLocksLastReleased: Gauge
  cleanupJobLocksLastReleased: Gauge
  cleanupLastSuccess: Gauge
  cleanupFailures: Counter<'operation'>
  shutdownLocksReleased: Counter
  fenced: Counter
  prefetchSize: Gauge<'pool'>
}

/**
 * Per-task job counts kept as plain numbers by the task wrapper and added to the counters when
 * they are read (a scrape): prom-client hashes and validates the labels on every inc(), even
 * through a labels() child, which showed in the worker's CPU profile at thousands of jobs/s.
 */
export interface JobCountCell {
  started: number
  completed: number
}

interface CellState extends JobCountCell {
  flushedStarted: number
  flushedCompleted: number
}

export function createWorkerMetrics(registry = new Registry()): WorkerMetrics {
  const registers = [registry]
  const cells = new Map<string, CellState>()
  return {
    jobCountCell(task: string): JobCountCell {
      let cell = cells.get(task)
      if (!cell) {
        cell = {started: 0, completed: 0, flushedStarted: 0, flushedCompleted: 0}
        cells.set(task, cell)
      }
      return cell
    },
    registry,
    workerActive: new Gauge({
      name: 'backfill_worker_active',
      help: 'Worker pools running (1) or stopped (0)',
      labelNames: ['pool'],
      registers,
    }),
    jobsStarted: new Counter({
      name: 'backfill_jobs_started_total',
      help: 'Jobs started by this worker',
      labelNames: ['task'],
      registers,
      collect() {
        for (const [task, cell] of cells) {
          if (cell.started > cell.flushedStarted) this.inc({task}, cell.started - cell.flushedStarted)
          cell.flushedStarted = cell.started
        }
      },
    }),
    jobsCompleted: new Counter({
      name: 'backfill_jobs_completed_total',
      help: 'Jobs whose handler succeeded',
      labelNames: ['task'],
      registers,
      collect() {
        for (const [task, cell] of cells) {
          if (cell.completed > cell.flushedCompleted) this.inc({task}, cell.completed - cell.flushedCompleted)
          cell.flushedCompleted = cell.completed
        }
      },
    }),
    jobsFailed: new Counter({
      name: 'backfill_jobs_failed_total',
      help: 'Jobs whose handler failed, by outcome (retry, exhausted, permanent)',
      labelNames: ['task', 'outcome'],
      registers,
    }),
    jobDuration: new Histogram({
      name: 'backfill_job_duration_seconds',
      help: 'Handler run time',
      labelNames: ['task', 'result'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    }),
    dlqJobsAdded: new Counter({
      name: 'backfill_dlq_jobs_added',
      help: 'Jobs moved into the DLQ by this worker',
      labelNames: ['task'],
      registers,
    }),
    dlqSize: new Gauge({name: 'backfill_dlq_size', help: 'Rows in backfill_dlq (after the last capture)', registers}),
    dlqCaptureDuration: new Histogram({
      name: 'backfill_dlq_capture_duration_seconds',
      help: 'Time of one DLQ capture run',
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers,
    }),
    dlqLastCapture: new Gauge({
      name: 'backfill_dlq_last_capture_timestamp',
      help: 'Unix time of the last successful DLQ capture',
      registers,
    }),
    dlqCaptureFailures: new Counter({
      name: 'backfill_dlq_capture_failures',
      help: 'Failed DLQ capture runs',
      registers,
    }),
    cleanupQueueLocksReleased: new Counter({
      name: 'backfill_cleanup_queue_locks_released',
      help: 'Stale queue locks released',
      registers,
    }),
    cleanupJobLocksReleased: new Counter({
      name: 'backfill_cleanup_job_locks_released',
      help: 'Stale job locks released',
      registers,
    }),
    cleanupQueueLocksLastReleased: new Gauge({
      name: 'backfill_cleanup_queue_locks_last_released',
      help: 'Queue locks released by the last cleanup that released any',
      registers,
    }),
    cleanupJobLocksLastReleased: new Gauge({
      name: 'backfill_cleanup_job_locks_last_released',
      help: 'Job locks released by the last cleanup that released any',
      registers,
    }),
    cleanupLastSuccess: new Gauge({
      name: 'backfill_cleanup_last_success_timestamp',
      help: 'Unix time of the last successful lock cleanup',
      registers,
    }),
    cleanupFailures: new Counter({
      name: 'backfill_cleanup_failures',
      help: 'Failed cleanup runs',
      labelNames: ['operation'],
      registers,
    }),
    shutdownLocksReleased: new Counter({
      name: 'backfill_shutdown_locks_released',
      help: 'Locks this worker still held at shutdown and released itself',
      registers,
    }),
    fenced: new Counter({
      name: 'backfill_worker_fenced_total',
      help: 'Times this worker stopped itself because no heartbeat was recorded (lost contact with the database)',
      registers,
    }),
    prefetchSize: new Gauge({
      name: 'backfill_worker_prefetch_size',
      help: 'Jobs the pool fetches per query into its local queue (adaptive prefetch: follows the completion rate)',
      labelNames: ['pool'],
      registers,
    }),
  }
}
