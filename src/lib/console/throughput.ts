/**
 * Throughput for the console's sparkline. graphile-worker deletes a job when it completes, so
 * nothing in the database counts completions; the console estimates them from counters it samples
 * when the overview loads (through the shared cache: one sample per cache window, however many
 * tabs are open). Between two samples:
 *
 *   completed ≈ (job ids issued) − (growth of the jobs table) − (growth of the DLQ)
 *
 * Ids issued is the change in the job id sequence's last value (exact and O(1); max(id) would miss
 * ids whose jobs are already gone). Also counted as completed: jobs removed by operators or failed
 * permanently without DLQ capture, and ids consumed by rolled-back inserts. A DLQ that shrinks
 * (retry, purge) captures nothing, so only its growth counts.
 */

/** One reading of the counters. */
export interface ThroughputSample {
  /** When the counters were read (ISO 8601). */
  at: string
  /** Rows in the jobs table. */
  jobs: number
  /** The job id sequence's last value; null when unknown (not yet used, or no privilege). */
  lastId: number | null
  /** Rows in the DLQ table (0 without one). */
  dlq: number
}

/** Jobs completed between the previous sample and this one. */
export interface ThroughputPoint {
  at: string
  intervalMs: number
  /** null when it cannot be told (an id counter missing or reset, e.g. a recreated schema). */
  completed: number | null
}

export interface ThroughputEstimate {
  /** Always true: the figures are estimated from sampled counters, not counted. */
  estimate: true
  samples: number
  points: ThroughputPoint[]
  /** Sum of the known points. */
  completed: number
  /** Time covered by the known points. */
  spanMs: number
  /** completed per minute over spanMs; null before two usable samples. */
  perMinute: number | null
}

/** The estimate over consecutive samples (oldest first); negative deltas are clamped to 0. */
export function estimateThroughput(samples: readonly ThroughputSample[]): ThroughputEstimate {
  const points: ThroughputPoint[] = []
  let completed = 0
  let spanMs = 0
  let a: ThroughputSample | undefined
  for (const b of samples) {
    const prev = a
    a = b
    if (!prev) continue
    const intervalMs = Date.parse(b.at) - Date.parse(prev.at)
    if (!(intervalMs > 0)) continue
    const issued = prev.lastId === null || b.lastId === null ? null : b.lastId - prev.lastId
    // A sequence that went backwards was reset (schema recreated): that interval is unknown.
    const value =
      issued === null || issued < 0 ? null : Math.max(0, issued - (b.jobs - prev.jobs) - Math.max(0, b.dlq - prev.dlq))
    points.push({at: b.at, intervalMs, completed: value})
    if (value !== null) {
      completed += value
      spanMs += intervalMs
    }
  }
  return {
    estimate: true,
    samples: samples.length,
    points,
    completed,
    spanMs,
    perMinute: spanMs > 0 ? (completed * 60_000) / spanMs : null,
  }
}

/** The last `capacity` samples, at most one per `minIntervalMs` (so 60 samples span ≥ 5 min). */
export class ThroughputRing {
  private readonly buffer: ThroughputSample[] = []

  constructor(
    readonly capacity = 60,
    readonly minIntervalMs = 5000,
  ) {}

  /** Keeps the sample unless it comes sooner than minIntervalMs after the last one kept. */
  push(sample: ThroughputSample): boolean {
    const last = this.buffer.at(-1)
    if (last && Date.parse(sample.at) - Date.parse(last.at) < this.minIntervalMs) return false
    this.buffer.push(sample)
    if (this.buffer.length > this.capacity) this.buffer.splice(0, this.buffer.length - this.capacity)
    return true
  }

  samples(): ThroughputSample[] {
    return [...this.buffer]
  }
}
