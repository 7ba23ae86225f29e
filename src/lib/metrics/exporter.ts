import {Counter, Gauge, type Registry} from 'prom-client'

import type {Database} from '../db.js'
import {AdvisoryLeader} from './leader.js'
import {
  collectQueueMetrics,
  type FailureGroupCache,
  QueueMetricsRegistry,
  type QueueMetricsOptions,
  type QueueMetricsSnapshot,
} from './queue-metrics.js'

export const DEFAULT_QUEUE_METRICS_INTERVAL_MS = 15_000

export interface QueueMetricsExporterOptions extends QueueMetricsOptions {
  /** Scan every this many ms (default 15 s); scrapes serve the last scan. */
  intervalMs?: number
  /**
   * Compute only while leading the fleet (an advisory lock per schema): workers set this so
   * that one of them scans, not all. The standalone exporter scans unconditionally.
   */
  leaderElection?: boolean
  /** Where the exporter's own series go (leader flag, failures); usually the worker's registry. */
  selfRegistry?: Registry
  onError?: (error: Error) => void
  onLeadership?: (leading: boolean) => void
  onScan?: (snapshot: QueueMetricsSnapshot) => void
}

/**
 * Scans the queue on an interval and keeps the result as Prometheus series. With leader
 * election, a process that does not lead exports no queue series at all (Prometheus then sees
 * them only from the leader, so sums over instances do not double count).
 */
export class QueueMetricsExporter {
  readonly metrics = new QueueMetricsRegistry()
  readonly intervalMs: number
  private readonly db: Database
  private readonly options: QueueMetricsExporterOptions
  private readonly leader: AdvisoryLeader | undefined
  private readonly leaderGauge: Gauge | undefined
  private readonly failures: Counter | undefined
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private serving = false
  private wasLeading = false
  private stopped = false
  private lastError: string | undefined
  private readonly groupCache: FailureGroupCache = {}

  constructor(db: Database, options: QueueMetricsExporterOptions = {}) {
    this.db = db
    this.options = options
    this.intervalMs = options.intervalMs ?? DEFAULT_QUEUE_METRICS_INTERVAL_MS
    if (options.leaderElection) {
      this.leader = new AdvisoryLeader({
        target: db.target,
        key: `queue-metrics:${db.schema}`,
        queryTimeoutMs: Math.max(1000, Math.min(this.intervalMs, 10_000)),
        onError: (error) => options.onError?.(error),
      })
    }
    if (options.selfRegistry) {
      const registers = [options.selfRegistry]
      this.leaderGauge = new Gauge({
        name: 'backfill_queue_metrics_leader',
        help: 'This process computes the fleet-wide queue metrics (1) or exports only its own (0)',
        registers,
      })
      this.failures = new Counter({
        name: 'backfill_queue_metrics_failures_total',
        help: 'Queue metrics scans that failed',
        registers,
      })
    }
  }

  /** The queue series, while this process has a current scan to serve; undefined otherwise. */
  get registry(): Registry | undefined {
    return this.serving ? this.metrics.registry : undefined
  }

  get isLeader(): boolean {
    return this.leader ? this.leader.isLeader : true
  }

  /** Why the last scan failed (cleared by the next success). */
  get error(): string | undefined {
    return this.lastError
  }

  /** Runs the first scan (awaited), then one every interval. */
  async start(): Promise<void> {
    await this.tick()
    if (this.stopped) return
    this.timer = setInterval(() => void this.tick(), this.intervalMs)
    this.timer.unref()
  }

  /** One election round and, when leading, one scan. Never overlaps itself; never throws. */
  tick(): Promise<void> {
    this.running ??= this.round().finally(() => (this.running = undefined))
    return this.running
  }

  private async round(): Promise<void> {
    if (this.stopped) return
    const leading = this.leader ? await this.leader.tryLead() : true
    this.leaderGauge?.set(leading ? 1 : 0)
    if (leading !== this.wasLeading) {
      this.wasLeading = leading
      if (this.leader) this.options.onLeadership?.(leading)
    }
    if (!leading) {
      this.serving = false
      this.metrics.clear()
      return
    }
    try {
      const snapshot = await collectQueueMetrics(this.db, {groupCache: this.groupCache, ...this.options})
      if (this.stopped) return
      this.metrics.apply(snapshot)
      this.serving = true
      this.lastError = undefined
      this.options.onScan?.(snapshot)
    } catch (error) {
      // Stale numbers would mislead an alert: export none until a scan succeeds again.
      this.serving = false
      this.metrics.clear()
      this.failures?.inc()
      this.lastError = (error as Error).message
      this.options.onError?.(error as Error)
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    await this.running
    this.serving = false
    await this.leader?.close()
    this.leaderGauge?.set(0)
  }
}
