/**
 * Adaptive prefetch: the size of a pool's graphile LocalQueue batch, driven by what the pool
 * is doing. Every job a fetch takes is locked and charged an attempt at once; those not yet
 * running are what a SIGKILL strands (locked until a cleaner releases them). So the batch is
 * bounded by time of work held rather than by a count:
 *
 *   size = free slots + min(held bound, max(rate × horizon, backlog boost)), between 1 and the cap
 *
 * - held bound: the jobs the pool can complete in `horizon` at full speed (slots ÷ average
 *   handler time × horizon): never more than about `horizon` of work waits in the queue;
 * - rate × horizon: what the pool completes in `horizon` at its current (smoothed) rate;
 * - backlog boost: a fetch that came back full means more jobs are waiting: the next one asks
 *   for four times as many (so a backlog of fast jobs reaches the cap within a few fetches instead
 *   of waiting for the rate to catch up with a batch size that limits it); it lapses as soon as
 *   a fetch is not full or nothing completes.
 *
 * Under a backlog of fast jobs the batch grows to the cap; with slow jobs it stays at the free
 * slots plus a few; when idle it shrinks to the free slots, so a burst after a quiet spell fills
 * every slot without holding a pile of slow jobs. What a SIGKILL at full speed strands is then
 * at most the running jobs plus about `horizon` of completions.
 *
 * The mechanism is graphile's own LocalQueue (fetching, TTL, returning jobs on release): only
 * its batch size (getJobBatchSize, read by each fetch) is driven.
 */

/** What the policy uses of graphile's LocalQueue instance (GRAPHILE_CONTRACT, checked by a unit test). */
export interface LocalQueueHandle {
  /** Read by each fetch twice: as the batch size of its query, then to tell whether it fetched the maximum. */
  getJobBatchSize: number
}

export interface PrefetchOptions {
  /** The pool's slots. */
  concurrency: number
  /** Largest batch. */
  cap: number
  /** Work held in prefetched jobs, at the current completion rate (ms). */
  horizonMs?: number
  /** How often the rate is sampled and the size applied (ms). */
  tickMs?: number
}

export const DEFAULT_PREFETCH_HORIZON_MS = 150
export const DEFAULT_PREFETCH_CAP = 500
const DEFAULT_TICK_MS = 100
/** A full fetch asks for this many times more next time (the cap is reached in a few fetches). */
const BACKLOG_GROWTH = 4
/** Weight of the newest rate sample (a time constant of about three ticks). */
const ALPHA = 0.3

export interface PrefetchState {
  /** The batch size the next fetch uses. */
  size: number
  /** Smoothed completions per second of this pool. */
  ratePerSecond: number
  /** Jobs running in the pool now. */
  running: number
}

/** One per pool: the instrumentation counts starts and finishes, a timer samples them. */
export class AdaptivePrefetch {
  /** Maintained by the task wrapper (plain fields: no per-job call). */
  running = 0
  completed = 0
  /** Total handler time of completed jobs (ms). */
  busyMs = 0
  private readonly concurrency: number
  private readonly cap: number
  private readonly horizonS: number
  private readonly tickMs: number
  private attached = false
  /** The size the fetch under way uses (see attach). */
  private fetchSize: number | undefined
  private fetchDone = false
  private timer: NodeJS.Timeout | undefined
  private rate = 0
  /** Smoothed handler time per job (ms); undefined until a job completed. */
  private jobMs: number | undefined
  private boost = 0
  private size: number
  private lastCompleted = 0
  private lastBusyMs = 0
  private lastAt = 0
  private readonly onChange: ((state: PrefetchState) => void) | undefined

  constructor(options: PrefetchOptions, onChange?: (state: PrefetchState) => void) {
    this.concurrency = options.concurrency
    this.cap = Math.max(1, options.cap)
    this.horizonS = (options.horizonMs ?? DEFAULT_PREFETCH_HORIZON_MS) / 1000
    this.tickMs = options.tickMs ?? DEFAULT_TICK_MS
    // The first fetch fills every slot.
    this.size = Math.min(this.cap, this.concurrency)
    this.onChange = onChange
  }

  /** The size a LocalQueue is created with. */
  get initialSize(): number {
    return this.size
  }

  /**
   * Takes over the batch size of the pool's LocalQueue (from graphile's localQueue:init
   * event). A fetch reads the size when it starts its query and again when the query has
   * returned (after localQueue:getJobs:complete, see fetched()), to tell whether it fetched
   * the maximum: both reads of one fetch must agree, or a full batch would look partial and
   * the queue would wait a poll interval instead of fetching again. So the first read fixes
   * the size of that fetch and the read after its completion releases it.
   */
  attach(queue: LocalQueueHandle): void {
    Object.defineProperty(queue, 'getJobBatchSize', {
      configurable: true,
      enumerable: true,
      get: () => {
        if (this.fetchSize === undefined) {
          this.fetchSize = this.size
          return this.fetchSize
        }
        const size = this.fetchSize
        if (this.fetchDone) {
          this.fetchSize = undefined
          this.fetchDone = false
        }
        return size
      },
      // graphile assigns it once, in the constructor (before this).
      set: () => undefined,
    })
    this.attached = true
    this.lastAt = performance.now()
    this.lastCompleted = this.completed
    this.timer = setInterval(() => this.tick(), this.tickMs)
    this.timer.unref()
  }

  /**
   * A fetch's query returned `count` jobs (graphile's localQueue:getJobs:complete): its next
   * size read is its last. A full batch means a backlog: the next fetch may ask for four times as many.
   */
  fetched(count: number): void {
    if (this.fetchSize === undefined) return
    this.fetchDone = true
    this.boost = count >= this.fetchSize ? Math.min(this.cap, Math.max(this.boost, this.fetchSize) * BACKLOG_GROWTH) : 0
    this.apply()
  }

  detach(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    this.attached = false
  }

  state(): PrefetchState {
    return {size: this.size, ratePerSecond: this.rate, running: this.running}
  }

  /** The size for the current load, rate, handler time and backlog (see the module comment). */
  target(): number {
    const idle = Math.max(0, this.concurrency - this.running)
    const held =
      this.jobMs === undefined
        ? this.concurrency
        : Math.ceil((this.concurrency * this.horizonS * 1000) / Math.max(this.jobMs, 0.001))
    const wanted = Math.max(Math.ceil(this.rate * this.horizonS), this.boost)
    return Math.max(1, Math.min(this.cap, idle + Math.min(held, wanted)))
  }

  private apply(): void {
    const next = this.target()
    if (next === this.size || !this.attached) return
    // The next fetch uses it (one under way keeps its own: see attach).
    this.size = next
    this.onChange?.(this.state())
  }

  /** Samples the completion rate and applies the new size unless a fetch is under way. */
  tick(now = performance.now()): void {
    const dt = (now - this.lastAt) / 1000
    if (dt <= 0) return
    const done = this.completed - this.lastCompleted
    const sample = done / dt
    if (done > 0) {
      const perJob = (this.busyMs - this.lastBusyMs) / done
      this.jobMs = this.jobMs === undefined ? perJob : ALPHA * perJob + (1 - ALPHA) * this.jobMs
    } else {
      // Nothing completed: no backlog being worked through.
      this.boost = 0
    }
    this.lastCompleted = this.completed
    this.lastBusyMs = this.busyMs
    this.lastAt = now
    this.rate = this.rate === 0 ? sample : ALPHA * sample + (1 - ALPHA) * this.rate
    if (this.rate < 0.01) this.rate = 0
    this.apply()
  }
}
