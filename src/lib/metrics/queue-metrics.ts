import {Counter, Gauge, Registry} from 'prom-client'

import type {Database} from '../db.js'
import {dlqStats} from '../dlq/stats.js'
import {queueStatus, type JobStateCounts, type StatusResult} from '../health/status.js'
import type {LivenessOptions} from '../locks/owners.js'
import {withGroupCounts} from '../dlq/group-counts.js'
import {auditTotals, dlqChangeKey, dlqChangeKeyFromGroups, dlqEventTotals} from '../sql/queue-metrics.js'

/** The job states a gauge reports (retrying is part of ready + scheduled, as in `status`). */
export const METRIC_STATES = ['ready', 'scheduled', 'running', 'retrying', 'exhausted'] as const
export type MetricState = (typeof METRIC_STATES)[number]

/** Label of the tasks and serial queues beyond the top N, summed (parenthesised: no task or queue name clashes). */
export const OTHER_LABEL = '(other)'
/** Queue label of the jobs that have no serial queue. */
export const PARALLEL_LABEL = '(parallel)'

export const DEFAULT_TOP_TASKS = 20
export const DEFAULT_TOP_QUEUES = 20

export interface QueueMetricsOptions extends LivenessOptions {
  /** Tasks labelled individually, the busiest first; the rest are summed under `(other)`. */
  topTasks?: number
  /** Serial queues labelled individually, the busiest first; the rest are summed under `(other)`. */
  topQueues?: number
  /** Count DLQ failure groups (one aggregate of the DLQ by task and first error line; default true). */
  failureGroups?: boolean
  /**
   * Keeps the last failure groups between scans: they are recomputed only when the DLQ
   * changed (grouping normalises every distinct error line: the costly part of a scan).
   */
  groupCache?: FailureGroupCache
  /** Scan as a background job (no parallel query workers; default true): see StatusOptions.background. */
  background?: boolean
}

export interface FailureGroupCache {
  key?: string
  groupsByTask?: Map<string, number>
}

export interface StateCounts {
  states: Record<MetricState, number>
  /** Age of the oldest ready job in seconds (0 when none is ready). */
  oldestReadyAgeSeconds: number
}

export interface QueueMetricsSnapshot {
  at: Date
  tasks: (StateCounts & {task: string; dlq: number; failureGroups: number})[]
  queues: (StateCounts & {queue: string})[]
  totals: StateCounts & {dlq: number | null}
  locks: {kind: 'job' | 'queue'; liveness: 'live' | 'dead' | 'unknown' | 'stale'; count: number}[]
  workers: {runtime: 'backfill' | 'rust'; state: 'live' | 'dead' | 'stopped'; count: number}[]
  /** Rows acted on per audited action (backfill_dlq_audit), cumulative; empty without a DLQ. */
  audit: Record<string, number>
  /** DLQ history events by kind (backfill_dlq_events), cumulative. */
  events: Record<string, number>
  durationMs: number
}

/**
 * One scan of the queue for Prometheus: `status`'s statements (one grouped scan of the jobs
 * table, the lock listing with owner liveness, the DLQ counts), plus the DLQ failure groups
 * and the audit and event totals. Read-only. Labels are bounded: the top N tasks and serial
 * queues, the rest folded into `(other)`.
 */
export async function collectQueueMetrics(
  db: Database,
  options: QueueMetricsOptions = {},
): Promise<QueueMetricsSnapshot> {
  const started = performance.now()
  const topTasks = Math.max(0, Math.floor(options.topTasks ?? DEFAULT_TOP_TASKS))
  const topQueues = Math.max(0, Math.floor(options.topQueues ?? DEFAULT_TOP_QUEUES))
  const status = await queueStatus(db, {...options, queueLimit: topQueues, background: options.background ?? true})
  const groupsByTask = new Map<string, number>()
  const audit: Record<string, number> = {}
  const events: Record<string, number> = {}
  if (status.dlq.exists) {
    if (options.failureGroups !== false && status.dlq.entries > 0) {
      const cache = options.groupCache
      const key = cache
        ? (await withGroupCounts(db, (tx, ready) => tx.one(ready ? dlqChangeKeyFromGroups : dlqChangeKey, []))).key
        : undefined
      if (cache?.groupsByTask && cache.key === key) {
        for (const [task, n] of cache.groupsByTask) groupsByTask.set(task, n)
      } else {
        const stats = await dlqStats(db, {selector: {}})
        for (const group of stats.groups)
          groupsByTask.set(group.taskIdentifier, (groupsByTask.get(group.taskIdentifier) ?? 0) + 1)
        if (cache) {
          cache.key = key
          cache.groupsByTask = new Map(groupsByTask)
        }
      }
    }
    const [auditRows, eventRows] = await Promise.all([db.rows(auditTotals, []), db.rows(dlqEventTotals, [])])
    for (const row of auditRows) audit[row.action] = Number(row.total)
    for (const row of eventRows) events[row.event] = Number(row.total)
  }
  return {
    at: status.at,
    tasks: foldTasks(status, groupsByTask, topTasks),
    queues: queuesOf(status),
    totals: {...stateCounts(status.totals), dlq: status.totals.dlq},
    locks: (['live', 'dead', 'unknown', 'stale'] as const).flatMap((liveness) => [
      {kind: 'job' as const, liveness, count: status.locks[liveness].jobs},
      {kind: 'queue' as const, liveness, count: status.locks[liveness].queues},
    ]),
    workers: workerCounts(status),
    audit,
    events,
    durationMs: performance.now() - started,
  }
}

function stateCounts(c: JobStateCounts): StateCounts {
  return {
    states: {ready: c.ready, scheduled: c.scheduled, running: c.running, retrying: c.retrying, exhausted: c.exhausted},
    oldestReadyAgeSeconds: Math.max(0, (c.oldestReadyAgeMs ?? 0) / 1000),
  }
}

function sumInto(into: StateCounts, add: StateCounts): void {
  for (const state of METRIC_STATES) into.states[state] += add.states[state]
  into.oldestReadyAgeSeconds = Math.max(into.oldestReadyAgeSeconds, add.oldestReadyAgeSeconds)
}

function emptyCounts(): StateCounts {
  return {states: {ready: 0, scheduled: 0, running: 0, retrying: 0, exhausted: 0}, oldestReadyAgeSeconds: 0}
}

/** The busiest tasks (jobs + DLQ entries) by name, the rest summed under `(other)`. */
function foldTasks(status: StatusResult, groups: Map<string, number>, top: number): QueueMetricsSnapshot['tasks'] {
  const weight = (t: StatusResult['tasks'][number]): number => t.ready + t.scheduled + t.running + t.exhausted + t.dlq
  const ranked = [...status.tasks].sort((a, b) => weight(b) - weight(a) || a.task.localeCompare(b.task))
  const out: QueueMetricsSnapshot['tasks'] = ranked
    .slice(0, top)
    .map((t) => ({task: t.task, ...stateCounts(t), dlq: t.dlq, failureGroups: groups.get(t.task) ?? 0}))
  const rest = ranked.slice(top)
  if (rest.length > 0) {
    const other = {task: OTHER_LABEL, ...emptyCounts(), dlq: 0, failureGroups: 0}
    for (const t of rest) {
      sumInto(other, stateCounts(t))
      other.dlq += t.dlq
      other.failureGroups += groups.get(t.task) ?? 0
    }
    out.push(other)
  }
  return out
}

function queuesOf(status: StatusResult): QueueMetricsSnapshot['queues'] {
  const out: QueueMetricsSnapshot['queues'] = status.queues.map((q) => ({
    queue: q.queue ?? PARALLEL_LABEL,
    ...stateCounts(q),
  }))
  if (status.otherQueues) out.push({queue: OTHER_LABEL, ...stateCounts(status.otherQueues)})
  return out
}

function workerCounts(status: StatusResult): QueueMetricsSnapshot['workers'] {
  const out: QueueMetricsSnapshot['workers'] = []
  for (const runtime of ['backfill', 'rust'] as const) {
    for (const state of ['live', 'dead', 'stopped'] as const) {
      out.push({runtime, state, count: status.workers.filter((w) => w.runtime === runtime && w.state === state).length})
    }
  }
  return out
}

/**
 * The queue metrics as Prometheus series, on a registry of their own (served only by the
 * process that computes them: the exporter, or the worker that leads the fleet).
 */
export class QueueMetricsRegistry {
  readonly registry = new Registry()
  private readonly jobs: Gauge<'task' | 'state'>
  private readonly jobsOldest: Gauge<'task'>
  private readonly queueJobs: Gauge<'queue' | 'state'>
  private readonly queueOldest: Gauge<'queue'>
  private readonly dlqEntries: Gauge<'task'>
  private readonly dlqGroups: Gauge<'task'>
  private readonly locks: Gauge<'kind' | 'liveness'>
  private readonly workers: Gauge<'runtime' | 'state'>
  private readonly audited: Counter<'action'>
  private readonly events: Counter<'event'>
  private readonly scanSeconds: Gauge
  private readonly scannedAt: Gauge

  constructor() {
    const registers = [this.registry]
    this.jobs = new Gauge({
      name: 'backfill_jobs',
      help: 'Jobs per task and state (ready, scheduled, running, retrying ⊂ ready+scheduled, exhausted); top tasks, the rest as (other)',
      labelNames: ['task', 'state'],
      registers,
    })
    this.jobsOldest = new Gauge({
      name: 'backfill_jobs_oldest_ready_age_seconds',
      help: 'Wait of the oldest ready job per task (0 when none is ready)',
      labelNames: ['task'],
      registers,
    })
    this.queueJobs = new Gauge({
      name: 'backfill_queue_jobs',
      help: 'Jobs per queue and state: (parallel) for jobs without a serial queue, the busiest serial queues, the rest as (other)',
      labelNames: ['queue', 'state'],
      registers,
    })
    this.queueOldest = new Gauge({
      name: 'backfill_queue_oldest_ready_age_seconds',
      help: 'Wait of the oldest ready job per queue (0 when none is ready)',
      labelNames: ['queue'],
      registers,
    })
    this.dlqEntries = new Gauge({
      name: 'backfill_dlq_entries',
      help: 'Entries in backfill_dlq per task',
      labelNames: ['task'],
      registers,
    })
    this.dlqGroups = new Gauge({
      name: 'backfill_dlq_failure_groups',
      help: 'Distinct failure groups (task + normalised error, as dlq stats groups them) in the DLQ per task',
      labelNames: ['task'],
      registers,
    })
    this.locks = new Gauge({
      name: 'backfill_locks',
      help: 'Job and queue locks by owner liveness (live, dead, unknown; stale = unknown owners past the stale timeouts)',
      labelNames: ['kind', 'liveness'],
      registers,
    })
    this.workers = new Gauge({
      name: 'backfill_workers',
      help: 'Workers seen in the last hour by runtime and state (live, dead = silent without a clean stop, stopped)',
      labelNames: ['runtime', 'state'],
      registers,
    })
    this.audited = new Counter({
      name: 'backfill_dlq_audited_total',
      help: 'Jobs or DLQ entries acted on per audited action (backfill_dlq_audit: CLI captures, retries, purges, jobs actions)',
      labelNames: ['action'],
      registers,
    })
    this.events = new Counter({
      name: 'backfill_dlq_events_total',
      help: 'DLQ history events by kind (backfill_dlq_events: retried, recaptured)',
      labelNames: ['event'],
      registers,
    })
    this.scanSeconds = new Gauge({
      name: 'backfill_queue_metrics_scan_seconds',
      help: 'Duration of the last queue metrics scan',
      registers,
    })
    this.scannedAt = new Gauge({
      name: 'backfill_queue_metrics_last_scan_timestamp_seconds',
      help: 'Unix time of the last successful queue metrics scan',
      registers,
    })
  }

  /** Replaces every series with the snapshot's (series of tasks that left the top N disappear). */
  apply(snapshot: QueueMetricsSnapshot): void {
    this.registry.resetMetrics()
    for (const t of snapshot.tasks) {
      for (const state of METRIC_STATES) this.jobs.set({task: t.task, state}, t.states[state])
      this.jobsOldest.set({task: t.task}, t.oldestReadyAgeSeconds)
      this.dlqEntries.set({task: t.task}, t.dlq)
      this.dlqGroups.set({task: t.task}, t.failureGroups)
    }
    for (const q of snapshot.queues) {
      for (const state of METRIC_STATES) this.queueJobs.set({queue: q.queue, state}, q.states[state])
      this.queueOldest.set({queue: q.queue}, q.oldestReadyAgeSeconds)
    }
    for (const l of snapshot.locks) this.locks.set({kind: l.kind, liveness: l.liveness}, l.count)
    for (const w of snapshot.workers) this.workers.set({runtime: w.runtime, state: w.state}, w.count)
    // Counters carry the tables' cumulative totals (they only grow unless rows are deleted by hand).
    for (const [action, total] of Object.entries(snapshot.audit)) this.audited.inc({action}, total)
    for (const [event, total] of Object.entries(snapshot.events)) this.events.inc({event}, total)
    this.scanSeconds.set(snapshot.durationMs / 1000)
    this.scannedAt.set(snapshot.at.getTime() / 1000)
  }

  /** Drops every series (a worker that lost the lead must not export stale values). */
  clear(): void {
    this.registry.resetMetrics()
  }
}
