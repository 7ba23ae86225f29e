import {UsageError} from '../errors.js'
import {DEFAULT_PREFETCH_CAP} from './prefetch.js'

/**
 * Mirrors the Rust crate's WorkerConfig (schema, concurrency, poll interval, DLQ processor
 * interval, stale-lock cleanup interval and timeouts), plus what graphile-worker's Node
 * runtime adds (local queue, batched completions) and reserved fast capacity.
 */
export interface WorkerConfig {
  /** One shared pool of this many slots (ignored when fast/bulk concurrency is set). */
  concurrency: number
  /**
   * Reserved capacity: with either of these set the worker runs two graphile pools. The fast
   * pool (fastConcurrency slots) never takes jobs carrying the bulk flag (priority >= 0); the
   * bulk pool (bulkConcurrency slots) takes any job. So a flood of bulk jobs can fill at most
   * the bulk slots, while fast jobs may use both.
   */
  fastConcurrency: number | null
  bulkConcurrency: number | null
  /** How often idle workers look for scheduled/retried jobs (new jobs arrive by LISTEN/NOTIFY). */
  pollIntervalMs: number
  /** DLQ capture interval; null turns the DLQ off (exhausted jobs then stay in the jobs table). */
  dlqIntervalMs: number | null
  /** Stale-lock cleanup interval; null turns the periodic cleanup off. */
  lockCleanupIntervalMs: number | null
  staleQueueLockTimeoutMs: number
  staleJobLockTimeoutMs: number
  /** Age of a Rust worker's heartbeat that makes it dead to the lock cleanup (unset: 5 min, the Rust recovery's). */
  rustHeartbeatTimeoutMs?: number
  /** How often the worker proves it is alive (registry heartbeat). */
  heartbeatIntervalMs: number
  /** Graceful shutdown: how long running jobs may take to finish before they are aborted. */
  shutdownTimeoutMs: number
  /** Off for PgBouncer in transaction mode. */
  preparedStatements: boolean
  /**
   * Jobs fetched per query into a local queue; 0 turns the local queue off. With
   * adaptivePrefetch, the largest batch (the size then follows the pool's load: prefetch.ts).
   */
  localQueueSize: number
  /** Size each shared pool's local queue by its completion rate (default unless a size is given). */
  adaptivePrefetch: boolean
  /** Completion/failure writes batched within this window (ms); -1 writes each at once. */
  completeBatchDelayMs: number
  failBatchDelayMs: number
  /** Install/upgrade the schema and DLQ objects at start (app-managed). */
  migrate: boolean
}

export const WORKER_DEFAULTS = {
  concurrency: 10,
  fastConcurrency: 10,
  bulkConcurrency: 5,
  pollIntervalMs: 200,
  dlqIntervalMs: 60_000,
  lockCleanupIntervalMs: 60_000,
  staleQueueLockTimeoutMs: 5 * 60_000,
  staleJobLockTimeoutMs: 30 * 60_000,
  heartbeatIntervalMs: 10_000,
  shutdownTimeoutMs: 30_000,
  completeBatchDelayMs: 0,
  failBatchDelayMs: 0,
} as const

/**
 * The fixed local queue when adaptivePrefetch is off and no size is given: two jobs per slot.
 * Measured here it keeps the throughput of much larger queues, while bounding what a crash
 * costs: prefetched jobs were locked and charged an attempt, and go back (with that attempt
 * used) only when their lock is released.
 */
export function defaultLocalQueueSize(concurrency: number): number {
  return Math.min(500, concurrency * 2)
}

export type WorkerConfigInput = Partial<WorkerConfig>

export function resolveWorkerConfig(input: WorkerConfigInput = {}): WorkerConfig {
  const concurrency = input.concurrency ?? WORKER_DEFAULTS.concurrency
  const split = input.fastConcurrency != null || input.bulkConcurrency != null
  const config: WorkerConfig = {
    concurrency,
    fastConcurrency: split ? (input.fastConcurrency ?? WORKER_DEFAULTS.fastConcurrency) : null,
    bulkConcurrency: split ? (input.bulkConcurrency ?? WORKER_DEFAULTS.bulkConcurrency) : null,
    pollIntervalMs: input.pollIntervalMs ?? WORKER_DEFAULTS.pollIntervalMs,
    dlqIntervalMs: input.dlqIntervalMs === undefined ? WORKER_DEFAULTS.dlqIntervalMs : input.dlqIntervalMs,
    lockCleanupIntervalMs:
      input.lockCleanupIntervalMs === undefined ? WORKER_DEFAULTS.lockCleanupIntervalMs : input.lockCleanupIntervalMs,
    staleQueueLockTimeoutMs: input.staleQueueLockTimeoutMs ?? WORKER_DEFAULTS.staleQueueLockTimeoutMs,
    staleJobLockTimeoutMs: input.staleJobLockTimeoutMs ?? WORKER_DEFAULTS.staleJobLockTimeoutMs,
    ...(input.rustHeartbeatTimeoutMs === undefined ? {} : {rustHeartbeatTimeoutMs: input.rustHeartbeatTimeoutMs}),
    heartbeatIntervalMs: input.heartbeatIntervalMs ?? WORKER_DEFAULTS.heartbeatIntervalMs,
    shutdownTimeoutMs: input.shutdownTimeoutMs ?? WORKER_DEFAULTS.shutdownTimeoutMs,
    preparedStatements: input.preparedStatements ?? true,
    // No size given: adaptive prefetch, up to DEFAULT_PREFETCH_CAP; a size given: that fixed size.
    adaptivePrefetch: input.adaptivePrefetch ?? input.localQueueSize === undefined,
    localQueueSize:
      input.localQueueSize ??
      ((input.adaptivePrefetch ?? true) ? DEFAULT_PREFETCH_CAP : defaultLocalQueueSize(concurrency)),
    completeBatchDelayMs: input.completeBatchDelayMs ?? WORKER_DEFAULTS.completeBatchDelayMs,
    failBatchDelayMs: input.failBatchDelayMs ?? WORKER_DEFAULTS.failBatchDelayMs,
    migrate: input.migrate ?? true,
  }
  // 0 means "off" for the periodic loops, never "as fast as possible".
  if (config.dlqIntervalMs === 0) config.dlqIntervalMs = null
  if (config.lockCleanupIntervalMs === 0) config.lockCleanupIntervalMs = null
  validate(config)
  return config
}

function validate(config: WorkerConfig): void {
  const intRange = (name: string, value: number | null, min: number, max: number): void => {
    if (value === null) return
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new UsageError(`${name} must be an integer from ${min} to ${max} (got ${value})`, {
        code: 'E_INVALID_WORKER_CONFIG',
      })
    }
  }
  intRange('concurrency', config.concurrency, 1, 1000)
  intRange('fast concurrency', config.fastConcurrency, 1, 1000)
  intRange('bulk concurrency', config.bulkConcurrency, 1, 1000)
  intRange('poll interval (ms)', config.pollIntervalMs, 10, 3_600_000)
  intRange('DLQ interval (ms)', config.dlqIntervalMs, 100, 86_400_000)
  intRange('lock cleanup interval (ms)', config.lockCleanupIntervalMs, 100, 86_400_000)
  intRange('stale queue lock timeout (ms)', config.staleQueueLockTimeoutMs, 1000, 7 * 86_400_000)
  intRange('stale job lock timeout (ms)', config.staleJobLockTimeoutMs, 1000, 7 * 86_400_000)
  intRange('heartbeat interval (ms)', config.heartbeatIntervalMs, 100, 3_600_000)
  intRange('shutdown timeout (ms)', config.shutdownTimeoutMs, 0, 86_400_000)
  intRange('local queue size', config.localQueueSize, 0, 10_000)
  intRange('complete batch delay (ms)', config.completeBatchDelayMs, -1, 60_000)
  intRange('fail batch delay (ms)', config.failBatchDelayMs, -1, 60_000)
}

export interface PoolPlan {
  /** Bounded label for metrics and logs. */
  role: 'shared' | 'fast' | 'bulk'
  concurrency: number
  forbiddenFlags: string[] | null
  /** Fixed size, or the cap with adaptivePrefetch; 0: no local queue. */
  localQueueSize: number
  adaptivePrefetch: boolean
}

/** The graphile pools this configuration runs. */
export function planPools(config: WorkerConfig, bulkFlag: string): PoolPlan[] {
  if (config.fastConcurrency === null || config.bulkConcurrency === null) {
    return [
      {
        role: 'shared',
        concurrency: config.concurrency,
        forbiddenFlags: null,
        localQueueSize: config.localQueueSize,
        adaptivePrefetch: config.adaptivePrefetch && config.localQueueSize > 0,
      },
    ]
  }
  // Neither pool uses a local queue. graphile-worker cannot batch fetches when a pool has
  // forbidden flags (its local queue then fetches job by job, and in 0.17.3 stalls), and
  // the bulk pool takes fast jobs too: one parked in its local queue behind slow bulk jobs
  // would wait while fast slots sit idle. Completions are still batched.
  return [
    {
      role: 'fast',
      concurrency: config.fastConcurrency,
      forbiddenFlags: [bulkFlag],
      localQueueSize: 0,
      adaptivePrefetch: false,
    },
    {
      role: 'bulk',
      concurrency: config.bulkConcurrency,
      forbiddenFlags: null,
      localQueueSize: 0,
      adaptivePrefetch: false,
    },
  ]
}

export function totalConcurrency(pools: readonly PoolPlan[]): number {
  return pools.reduce((sum, p) => sum + p.concurrency, 0)
}
