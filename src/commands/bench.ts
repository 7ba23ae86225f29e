import {Flags} from '@oclif/core'

import {DbCommand, withoutSessionLimitFlag} from '../cli/base-command.js'
import {duration} from '../cli/flags.js'
import {BENCH_DEFAULTS, type BenchProgress, type BenchReport, runBench} from '../lib/bench/run.js'
import {formatDuration} from '../lib/duration.js'
import {parseSchemaName} from '../lib/identifiers.js'
import {requiredPoolSize} from '../lib/worker/runner.js'

export default class Bench extends DbCommand<typeof Bench> {
  static override sessionLimits = 'none' as const
  static override baseFlags = withoutSessionLimitFlag()
  static override summary =
    "Measure what this database can do: enqueue and processing throughput and pickup latency, with backfill's real code paths."

  static override description =
    "Creates a throwaway database beside the target's (same server and role; falls back to a throwaway schema in the target database when the role may not create databases, or with --same-database/--schema), so the schema it migrates is announced to no one: graphile-worker pools stop on any breaking migration announced in their database, whatever its schema. In it, a throwaway schema (random name; it refuses any schema it did not create, or one that holds jobs); it enqueues no-op jobs with the library's batched enqueue, works them off with the worker's real code path (WorkerRunner, default settings), then measures idle pickup latency (enqueue → handler start) with sequential single jobs, and drops what it created. Burn-down by default (--jobs); --duration keeps the queue stocked and measures a fixed window instead, like `river bench`. Progress on stderr; --json for the report."

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --jobs 100000 --concurrency 20',
    '<%= config.bin %> <%= command.id %> --duration 30s --json',
  ]

  static override flags = {
    jobs: Flags.integer({
      min: 100,
      max: 10_000_000,
      default: BENCH_DEFAULTS.jobs,
      summary: 'No-op jobs to enqueue and work off (burn-down mode).',
    }),
    concurrency: Flags.integer({
      min: 1,
      max: 1000,
      default: BENCH_DEFAULTS.concurrency,
      summary: 'Worker concurrency.',
    }),
    duration: duration({
      summary: 'Continuous mode: keep the queue stocked and measure for this long (e.g. 30s, 2m).',
    }),
    'latency-samples': Flags.integer({
      min: 0,
      max: 10_000,
      default: BENCH_DEFAULTS.latencySamples,
      summary: 'Sequential pickup-latency samples (0 = skip).',
    }),
    keep: Flags.boolean({summary: 'Keep the benchmark schema (and throwaway database) afterwards.'}),
    'same-database': Flags.boolean({
      summary:
        'Run in a schema of the target database instead of a throwaway database (plain graphile-worker pools there stop when it is migrated).',
    }),
  }

  async run(): Promise<BenchReport> {
    this.handlesInterrupt = true
    const {flags} = this
    const durationMs = flags.duration
    // The global --schema defaults to the real queue; bench only ever uses a schema it creates.
    const explicitSchema = this.argv.some((a) => a === '--schema' || a.startsWith('--schema='))
    const db = this.db({max: requiredPoolSize({concurrency: flags.concurrency}) + 2})
    const report = await runBench(db, {
      jobs: flags.jobs,
      concurrency: flags.concurrency,
      durationMs,
      latencySamples: flags['latency-samples'],
      schema: explicitSchema ? parseSchemaName(flags.schema) : undefined,
      keep: flags.keep,
      sameDatabase: flags['same-database'],
      poolSize: requiredPoolSize({concurrency: flags.concurrency}) + 2,
      signal: this.interrupt.signal,
      onProgress: this.progressReporter(),
    })
    this.render(report)
    if (this.interrupt.signal.aborted) process.exitCode = 130
    return report
  }

  private progressReporter(): (p: BenchProgress) => void {
    const tty = Boolean(process.stderr.isTTY) && !this.flags.quiet
    let lastPhase = ''
    let lastLine = 0
    return (p) => {
      const text = describeProgress(p)
      if (this.flags.quiet) return
      if (tty) {
        process.stderr.write(`\r${text.slice(0, (process.stderr.columns || 80) - 1)}\u001B[K`)
        if (p.phase === 'cleanup') process.stderr.write('\r\u001B[K')
        return
      }
      // Pipes and CI: a line per phase and every 2 s, never a redraw.
      const now = Date.now()
      if (p.phase !== lastPhase || now - lastLine > 2000) {
        process.stderr.write(`${text}\n`)
        lastPhase = p.phase
        lastLine = now
      }
    }
  }

  private render(report: BenchReport): void {
    const s = report.settings
    const rows: [string, string][] = [
      [
        'enqueue',
        `${Math.round(report.enqueue.jobsPerSecond).toLocaleString('en-US')} jobs/s (${report.enqueue.jobs.toLocaleString('en-US')} jobs in ${report.enqueue.seconds.toFixed(2)} s)`,
      ],
      [
        'processing',
        `${Math.round(report.processing.jobsPerSecond).toLocaleString('en-US')} jobs/s (${report.processing.jobs.toLocaleString('en-US')} jobs in ${report.processing.seconds.toFixed(2)} s)`,
      ],
    ]
    if (report.latencyMs) {
      const l = report.latencyMs
      rows.push([
        'pickup latency',
        `p50 ${l.p50.toFixed(1)} ms, p95 ${l.p95.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms, max ${l.max.toFixed(1)} ms (${l.samples} samples)`,
      ])
    }
    rows.push([
      'settings',
      `${s.mode}${s.durationMs ? ` for ${formatDuration(s.durationMs)}` : ''}, concurrency ${s.concurrency}, local queue ${s.localQueueSize}, batch delay ${s.batchDelayMs} ms, poll ${s.pollIntervalMs} ms, PostgreSQL ${s.postgres}`,
    ])
    rows.push(['schema', `${report.schema}${report.schemaDropped ? ' (dropped)' : ' (kept)'}`])
    const d = report.database
    rows.push([
      'database',
      d.throwaway
        ? `${d.name} (throwaway${report.schemaDropped ? ', dropped' : ', kept'})`
        : `${d.name} (shared: ${d.sharedBecause ?? 'asked for'})`,
    ])
    this.out.table(rows, [
      {header: 'BENCH', get: (r) => r[0]},
      {header: '', get: (r) => r[1]},
    ])
  }
}

function describeProgress(p: BenchProgress): string {
  const count = `${p.done.toLocaleString('en-US')}${p.total ? `/${p.total.toLocaleString('en-US')}` : ''}`
  const rate = p.rate === null ? '' : `  ${Math.round(p.rate).toLocaleString('en-US')} jobs/s`
  switch (p.phase) {
    case 'setup':
      return 'setting up a throwaway database and schema…'
    case 'enqueue':
      return `enqueueing ${count}${rate}`
    case 'process':
      return `processing ${count}${rate}`
    case 'latency':
      return `measuring pickup latency ${count}`
    case 'cleanup':
      return 'cleaning up…'
  }
}
