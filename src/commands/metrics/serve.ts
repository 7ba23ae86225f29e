import {Flags} from '@oclif/core'
import {Registry} from 'prom-client'

import {DbCommand} from '../../cli/base-command.js'
import {duration, durationDefault} from '../../cli/flags.js'
import {livenessFlags, livenessOptions} from '../../cli/liveness-flags.js'
import {DEFAULT_QUEUE_METRICS_INTERVAL_MS, QueueMetricsExporter} from '../../lib/metrics/exporter.js'
import {DEFAULT_TOP_QUEUES, DEFAULT_TOP_TASKS} from '../../lib/metrics/queue-metrics.js'
import {EventLoopWatch} from '../../lib/worker/health.js'
import {serveMetrics} from '../../lib/worker/metrics-server.js'

export const DEFAULT_EXPORTER_PORT = 9465

export interface MetricsServeSummary {
  url: string
  scans: number
  failures: number
  durationMs: number
}

export default class MetricsServe extends DbCommand<typeof MetricsServe> {
  static override summary =
    'Serve the queue metrics for Prometheus (exporter mode): jobs per task, queue and state, oldest ready age, DLQ, locks, workers.'

  static override description = `For fleets whose workers are not \`backfill worker\` (plain Node graphile-worker, Rust services) or that want one exporter instead of the worker leader. Scans the queue every --interval with the statements of \`backfill status\` and serves the last scan at GET /metrics; GET /healthz answers while the process runs, GET /readyz once a scan succeeded and while the last one did (503 otherwise). Read-only: needs SELECT on the schema. Binds to loopback unless --host says otherwise. Runs until SIGINT/SIGTERM.

Series: backfill_jobs{task,state}, backfill_jobs_oldest_ready_age_seconds{task}, backfill_queue_jobs{queue,state}, backfill_queue_oldest_ready_age_seconds{queue}, backfill_dlq_entries{task}, backfill_dlq_failure_groups{task}, backfill_locks{kind,liveness}, backfill_workers{runtime,state}, backfill_dlq_audited_total{action}, backfill_dlq_events_total{event}, backfill_queue_metrics_scan_seconds, backfill_queue_metrics_last_scan_timestamp_seconds. Tasks and serial queues beyond --top-tasks/--top-queues are summed as "(other)"; jobs without a serial queue are queue "(parallel)".`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --host 0.0.0.0 --port 9465 --interval 30s',
    '<%= config.bin %> <%= command.id %> --top-tasks 50 --top-queues 10',
  ]

  static override flags = {
    port: Flags.integer({
      env: 'BACKFILL_EXPORTER_PORT',
      min: 0,
      max: 65_535,
      default: DEFAULT_EXPORTER_PORT,
      summary: 'Port to serve on (0 = any free port).',
    }),
    host: Flags.string({
      env: 'BACKFILL_EXPORTER_HOST',
      default: '127.0.0.1',
      summary: 'Address to bind (loopback by default; 0.0.0.0 in a container).',
    }),
    interval: duration({
      env: 'BACKFILL_EXPORTER_INTERVAL',
      defaultUnit: 's',
      minMs: 100,
      ...durationDefault(DEFAULT_QUEUE_METRICS_INTERVAL_MS),
      summary: 'Scan the queue this often (bare number = seconds); scrapes serve the last scan.',
    }),
    'top-tasks': Flags.integer({
      min: 0,
      max: 1000,
      default: DEFAULT_TOP_TASKS,
      summary: 'Tasks labelled by name, the busiest first; the rest are summed as (other).',
    }),
    'top-queues': Flags.integer({
      min: 0,
      max: 1000,
      default: DEFAULT_TOP_QUEUES,
      summary: 'Serial queues labelled by name, the busiest first; the rest are summed as (other).',
    }),
    'failure-groups': Flags.boolean({
      default: true,
      allowNo: true,
      summary: 'Count DLQ failure groups (--no-failure-groups skips that aggregate of the DLQ).',
    }),
    ...livenessFlags,
  }

  async run(): Promise<MetricsServeSummary> {
    this.handlesInterrupt = true
    const {flags} = this
    const started = performance.now()
    const self = new Registry()
    let scans = 0
    let failures = 0
    const exporter = new QueueMetricsExporter(this.db({max: 3}), {
      intervalMs: flags.interval,
      topTasks: flags['top-tasks'],
      topQueues: flags['top-queues'],
      failureGroups: flags['failure-groups'],
      selfRegistry: self,
      ...livenessOptions(flags),
      onScan: () => (scans += 1),
      onError: (error) => {
        failures += 1
        this.out.warn(`queue metrics scan failed: ${error.message}`)
      },
    })
    const loop = new EventLoopWatch()
    const server = await serveMetrics(self, {
      port: flags.port,
      host: flags.host,
      portFlag: '--port',
      extra: () => exporter.registry,
      probes: {
        live: () => {
          const lag = loop.lagMs()
          return lag > 5000
            ? {ok: false, reason: `event loop stalled for ${Math.round(lag)} ms`}
            : {ok: true, reason: 'running'}
        },
        ready: () =>
          exporter.registry
            ? {ok: true, reason: 'last scan succeeded'}
            : {ok: false, reason: exporter.error ? `last scan failed: ${exporter.error}` : 'no scan yet'},
      },
    })
    try {
      this.out.info(`queue metrics at ${server.url} (every ${flags.interval / 1000} s; probes /healthz, /readyz)`)
      await exporter.start()
      if (!this.interrupt.signal.aborted)
        await new Promise((resolve) => this.interrupt.signal.addEventListener('abort', resolve, {once: true}))
    } finally {
      await exporter.stop()
      loop.stop()
      await server.close()
    }
    return {url: server.url, scans, failures, durationMs: Math.round(performance.now() - started)}
  }
}
