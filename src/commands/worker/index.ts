import {Flags} from '@oclif/core'

import {DbCommand, withoutSessionLimitFlag} from '../../cli/base-command.js'
import {duration} from '../../cli/flags.js'
import {formatJson, formatText, type LogLevel, shouldLog} from '../../cli/worker-log.js'
import {scrubSecrets} from '../../lib/connection.js'
import {InternalError, UsageError} from '../../lib/errors.js'
import {preparedStatementsFromEnv} from '../../lib/pooler.js'
import type {WorkerConfigInput} from '../../lib/worker/config.js'
import type {WorkerEvent} from '../../lib/worker/events.js'
import type {WorkerHandle, WorkerSummary} from '../../lib/worker/runner.js'

/** A worker that stopped on a failure (long-running or --once). */
const STOPPED_SUGGESTIONS = ['check the database connection and the log above; a supervisor should restart the worker']

export default class Worker extends DbCommand<typeof Worker> {
  static override sessionLimits = 'worker' as const
  static override baseFlags = withoutSessionLimitFlag()
  static override summary =
    'Run task handlers: graphile-worker with DLQ capture, permanent failures, reserved fast capacity and a clean shutdown.'

  static override description =
    "Loads tasks from a directory (file name = task identifier) or a module, installs the schema if needed, captures exhausted jobs into the DLQ (at startup, every --dlq-interval and soon after a job exhausts its attempts), and processes jobs until SIGINT/SIGTERM. On the first signal it stops fetching, hands back prefetched jobs, lets running jobs finish within --shutdown-timeout and exits 0 with no job left locked; a second signal (or the timeout) aborts the running jobs (they are retried elsewhere), still releases this worker's locks, and exits 130. Logs one line per job event on stdout (stderr with --json, which prints a summary document at exit)."

  static override examples = [
    '<%= config.bin %> <%= command.id %> --concurrency 10',
    '<%= config.bin %> <%= command.id %> --tasks ./dist/tasks --fast-concurrency 4 --bulk-concurrency 8 --metrics-port 9464',
    '<%= config.bin %> <%= command.id %> --once --json',
    'DATABASE_URL=postgres://app@db/app CONCURRENCY=20 <%= config.bin %> <%= command.id %> --log-format json',
  ]

  static override flags = {
    tasks: Flags.string({
      env: 'BACKFILL_TASKS',
      summary: 'Directory of task files (.js/.cjs/.mjs; file name = task identifier). Default: ./tasks',
      exclusive: ['task-module'],
    }),
    'task-module': Flags.string({
      env: 'BACKFILL_TASK_MODULE',
      summary: 'Module exporting a task list (default export or `tasks`).',
      exclusive: ['tasks'],
    }),
    crontab: Flags.string({env: 'BACKFILL_CRONTAB', summary: 'graphile-worker crontab file for recurring jobs.'}),
    concurrency: Flags.integer({
      env: 'CONCURRENCY',
      min: 1,
      max: 1000,
      summary: 'Jobs run at once, one shared pool (default 10).',
    }),
    'fast-concurrency': Flags.integer({
      env: 'FAST_QUEUE_CONCURRENCY',
      min: 1,
      max: 1000,
      summary:
        'Slots reserved for fast jobs (priority < 0); with --bulk-concurrency replaces --concurrency (default 10 when either is set).',
    }),
    'bulk-concurrency': Flags.integer({
      env: 'BULK_QUEUE_CONCURRENCY',
      min: 1,
      max: 1000,
      summary: 'Slots for any job, including bulk (priority >= 0) (default 5 when either is set).',
    }),
    'poll-interval': duration({
      env: 'POLL_INTERVAL_MS',
      defaultUnit: 'ms',
      summary: 'How often idle workers look for scheduled/retried jobs (bare number = ms; default 200).',
    }),
    'dlq-interval': duration({
      env: 'DLQ_PROCESSOR_INTERVAL_SECS',
      defaultUnit: 's',
      summary: 'DLQ capture interval (bare number = seconds; default 60; 0 turns the DLQ off).',
    }),
    dlq: Flags.boolean({
      default: true,
      allowNo: true,
      summary: 'Capture exhausted jobs into backfill_dlq (--no-dlq leaves them in the jobs table).',
    }),
    'shutdown-timeout': duration({
      env: 'SHUTDOWN_TIMEOUT_SECS',
      defaultUnit: 's',
      summary: 'Time running jobs get to finish after SIGINT/SIGTERM (bare number = seconds; default 30).',
    }),
    'prepared-statements': Flags.boolean({
      default: true,
      allowNo: true,
      summary:
        'Use prepared statements (--no-prepared-statements, or BACKFILL_PREPARED_STATEMENTS=false, for a connection pooled per transaction).',
    }),
    'local-queue-size': Flags.integer({
      env: 'BACKFILL_LOCAL_QUEUE_SIZE',
      min: 0,
      max: 10_000,
      summary:
        'Fix the jobs fetched per query into the local queue (0 = off; default: adaptive, the free slots + 150 ms of work, at most 500).',
    }),
    'batch-delay': Flags.integer({
      env: 'BACKFILL_BATCH_DELAY_MS',
      min: -1,
      max: 60_000,
      summary:
        'Batch completion/failure writes within this many ms (default 0 = same tick; -1 is taken as 0: graphile-worker does not check its unbatched writes).',
    }),
    'lock-cleanup-interval': duration({
      env: 'BACKFILL_LOCK_CLEANUP_INTERVAL_SECS',
      defaultUnit: 's',
      summary:
        'Release stale locks (dead workers at once, unknown owners past the timeouts) at start and this often (bare number = seconds; default 60; 0 = off).',
    }),
    'stale-queue-lock-timeout': duration({
      env: 'BACKFILL_STALE_QUEUE_LOCK_TIMEOUT_SECS',
      defaultUnit: 's',
      summary: "Age after which an unknown owner's queue lock is released (default 5m).",
    }),
    'stale-job-lock-timeout': duration({
      env: 'BACKFILL_STALE_JOB_LOCK_TIMEOUT_SECS',
      defaultUnit: 's',
      summary: "Age after which an unknown owner's job lock is released (default 30m; keep it above your longest job).",
    }),
    'rust-heartbeat-timeout': duration({
      env: 'BACKFILL_RUST_HEARTBEAT_TIMEOUT_SECS',
      defaultUnit: 's',
      summary:
        "The lock cleanup's bound on a Rust graphile_worker's heartbeat (default 5m, the Rust recovery's; raise it for Rust services with a longer heartbeat).",
    }),
    'heartbeat-interval': duration({
      env: 'BACKFILL_HEARTBEAT_INTERVAL',
      defaultUnit: 's',
      summary: 'Registry heartbeat interval proving this worker is alive (bare number = seconds; default 10).',
    }),
    migrate: Flags.boolean({
      default: true,
      allowNo: true,
      summary:
        'Install or upgrade the schema and DLQ at start (--no-migrate: require them, for least-privilege roles).',
    }),
    once: Flags.boolean({
      summary:
        'Capture, run every job that is runnable now (serial queues drain fully; no local queue or batching), capture again, then exit.',
    }),
    'log-format': Flags.option({
      options: ['text', 'json'] as const,
      env: 'BACKFILL_LOG_FORMAT',
      default: 'text',
      summary: 'Log lines as text or NDJSON.',
    })(),
    'log-level': Flags.option({
      options: ['debug', 'info', 'warn', 'error'] as const,
      env: 'BACKFILL_LOG_LEVEL',
      default: 'info',
      summary: 'Least severe events to log (job starts are debug, completions info).',
    })(),
    'metrics-port': Flags.integer({
      env: 'BACKFILL_METRICS_PORT',
      min: 0,
      max: 65_535,
      summary: 'Serve Prometheus metrics on this port (0 = any free port).',
    }),
    'metrics-host': Flags.string({
      env: 'BACKFILL_METRICS_HOST',
      default: '127.0.0.1',
      summary: 'Address for the metrics server (loopback by default).',
    }),
    'queue-metrics-interval': duration({
      env: 'BACKFILL_QUEUE_METRICS_INTERVAL_SECS',
      defaultUnit: 's',
      summary:
        'With --metrics-port: one worker of the fleet (an advisory-lock leader) also serves the queue metrics, scanned this often (bare number = seconds; default 15; 0 = off).',
    }),
    'metrics-top-tasks': Flags.integer({
      env: 'BACKFILL_METRICS_TOP_TASKS',
      min: 0,
      max: 1000,
      summary: 'Queue metrics: tasks labelled by name, the busiest first; the rest are summed as (other) (default 20).',
    }),
    'metrics-top-queues': Flags.integer({
      env: 'BACKFILL_METRICS_TOP_QUEUES',
      min: 0,
      max: 1000,
      summary: 'Queue metrics: serial queues labelled by name, the busiest first; the rest as (other) (default 20).',
    }),
  }

  private handle: WorkerHandle | undefined
  private forceRequested = false

  async run(): Promise<WorkerSummary> {
    this.handlesInterrupt = true
    const {flags} = this
    const config = this.workerConfig()
    const [
      {loadTasks, loadCrontab},
      {WorkerRunner, requiredPoolSize},
      {serveMetrics},
      {EventLoopWatch, workerProbes},
      {QueueMetricsExporter},
      {Database},
    ] = await Promise.all([
      import('../../lib/worker/tasks.js'),
      import('../../lib/worker/runner.js'),
      import('../../lib/worker/metrics-server.js'),
      import('../../lib/worker/health.js'),
      import('../../lib/metrics/exporter.js'),
      import('../../lib/db.js'),
    ])
    const cron = flags.crontab ? await loadCrontab(flags.crontab, '--crontab / BACKFILL_CRONTAB') : undefined
    const loaded = await loadTasks({
      directory: flags.tasks,
      module: flags['task-module'],
      labels: {directory: '--tasks DIR', module: '--task-module FILE'},
    })
    const db = this.db({max: requiredPoolSize(config), preparedStatements: config.preparedStatements})
    const log = this.logger(flags['log-format'], flags['log-level'])
    const runner = new WorkerRunner({db, tasks: loaded.tasks, config, ...(cron ? {cron} : {}), onEvent: log})
    const serving = flags['metrics-port'] !== undefined
    const queueInterval = flags['queue-metrics-interval'] ?? 15_000
    // The queue scan has a small pool of its own, so it never waits behind (or starves) the jobs.
    const queueDb =
      serving && !flags.once && queueInterval > 0
        ? Database.connect({
            target: this.connectionTarget(),
            schema: this.schema,
            applicationName: 'backfill worker queue-metrics',
            max: 2,
            preparedStatements: config.preparedStatements ?? true,
          })
        : undefined
    const queueMetrics = queueDb
      ? new QueueMetricsExporter(queueDb, {
          intervalMs: queueInterval,
          leaderElection: true,
          selfRegistry: runner.metrics.registry,
          topTasks: flags['metrics-top-tasks'],
          topQueues: flags['metrics-top-queues'],
          onError: (error) => log({type: 'error', where: 'queue metrics', error: error.message}),
          onLeadership: (leading) =>
            log({
              type: 'log',
              level: 'info',
              message: leading
                ? 'queue metrics: this worker leads the fleet and serves the queue metrics'
                : 'queue metrics: another worker leads the fleet',
            }),
        })
      : undefined
    const loop = serving ? new EventLoopWatch() : undefined
    let metrics
    try {
      metrics =
        serving && loop
          ? await serveMetrics(runner.metrics.registry, {
              port: flags['metrics-port'] as number,
              host: flags['metrics-host'],
              extra: () => queueMetrics?.registry,
              probes: workerProbes(() => runner.healthState(), loop),
            })
          : undefined
    } catch (error) {
      loop?.stop()
      await queueDb?.end()
      throw error
    }
    if (metrics) log({type: 'log', level: 'info', message: `metrics at ${metrics.url} (probes: /healthz, /readyz)`})
    // graphile-worker 0.17.3 can reject a promise nobody awaits when the database goes away
    // mid-batch (returning its local queue fails); stop cleanly instead of crashing.
    let unhandled: string | undefined
    const onUnhandled = (reason: unknown): void => {
      log({
        type: 'error',
        where: 'unhandled rejection',
        error: reason instanceof Error ? reason.message : String(reason),
      })
      unhandled = reason instanceof Error ? reason.message : String(reason)
      if (this.handle) void this.handle.stop({force: true, reason: 'unhandled error'}).catch(() => undefined)
      setTimeout(() => process.exit(1), 15_000).unref()
    }
    process.on('unhandledRejection', onUnhandled)
    try {
      if (flags.once) {
        const summary = await runner.runOnce()
        // The same failure as below: in once mode graphile's writes are never awaited.
        if (unhandled) throw new InternalError(`worker stopped: ${unhandled}`, {suggestions: STOPPED_SUGGESTIONS})
        return summary
      }
      this.handle = await runner.start()
      await queueMetrics?.start()
      const onSignal = (): void => void this.handle?.stop({reason: 'signal'}).catch(() => undefined)
      if (this.interrupt.signal.aborted) onSignal()
      else this.interrupt.signal.addEventListener('abort', onSignal, {once: true})
      const summary = await this.handle.done
      const failure = summary.failure ?? unhandled
      if (failure) {
        throw new InternalError(`worker stopped: ${failure}`, {suggestions: STOPPED_SUGGESTIONS})
      }
      if (summary.forced) process.exitCode = 130
      return summary
    } finally {
      process.off('unhandledRejection', onUnhandled)
      await queueMetrics?.stop()
      await queueDb?.end()
      loop?.stop()
      await metrics?.close()
      await loaded.release()
    }
  }

  /** Second SIGINT/SIGTERM: abort running jobs but still release our locks, then exit. */
  protected override onRepeatedInterrupt(signal: NodeJS.Signals): void {
    if (!this.handle || this.forceRequested) return super.onRepeatedInterrupt(signal)
    this.forceRequested = true
    process.stderr.write(`received ${signal} again: aborting running jobs\n`)
    void this.handle.stop({force: true, reason: `second ${signal}`}).catch(() => undefined)
    // If even the forced stop hangs (database gone), leave anyway.
    setTimeout(() => process.exit(130), 15_000).unref()
  }

  private workerConfig(): WorkerConfigInput {
    const {flags} = this
    const explicitConcurrency = this.argv.some((a) => a === '--concurrency' || a.startsWith('--concurrency='))
    const split = flags['fast-concurrency'] !== undefined || flags['bulk-concurrency'] !== undefined
    if (split && explicitConcurrency) {
      throw new UsageError('--concurrency cannot be combined with --fast-concurrency/--bulk-concurrency', {
        code: 'E_CONCURRENCY_FLAGS',
        suggestions: [
          'use --concurrency N for one shared pool, or --fast-concurrency F --bulk-concurrency B for reserved fast capacity (F + B slots in all)',
        ],
      })
    }
    // Unset flags stay undefined: resolveWorkerConfig fills in the defaults and checks the ranges.
    return {
      concurrency: flags.concurrency,
      ...(split
        ? {fastConcurrency: flags['fast-concurrency'] ?? null, bulkConcurrency: flags['bulk-concurrency'] ?? null}
        : {}),
      pollIntervalMs: flags['poll-interval'],
      dlqIntervalMs: flags.dlq ? flags['dlq-interval'] : null,
      shutdownTimeoutMs: flags['shutdown-timeout'],
      heartbeatIntervalMs: flags['heartbeat-interval'],
      lockCleanupIntervalMs: flags['lock-cleanup-interval'],
      staleQueueLockTimeoutMs: flags['stale-queue-lock-timeout'],
      staleJobLockTimeoutMs: flags['stale-job-lock-timeout'],
      rustHeartbeatTimeoutMs: flags['rust-heartbeat-timeout'],
      localQueueSize: flags['local-queue-size'],
      completeBatchDelayMs: flags['batch-delay'],
      failBatchDelayMs: flags['batch-delay'],
      preparedStatements: flags['prepared-statements'] && preparedStatementsFromEnv(),
      migrate: flags.migrate,
    }
  }

  private logger(format: 'text' | 'json', level: LogLevel): (event: WorkerEvent) => void {
    // Logs are the output of a streaming command; under --json they move to stderr.
    const stream = this.jsonEnabled() ? process.stderr : process.stdout
    const color = this.jsonEnabled() ? this.out.errColor : this.out.color
    return (event) => {
      // Fenced (lost contact with the database): whatever the forced stop manages in 3 s, leave
      // then, so no task of this process runs on once other workers may take its jobs over.
      if (event.type === 'error' && event.where === 'liveness') setTimeout(() => process.exit(1), 3000).unref()
      if (!shouldLog(event, level)) return
      // Task errors and database messages may quote the connection string (a task that reads
      // DATABASE_URL): the password stays out of the log like out of every error.
      const line = format === 'json' ? formatJson(event) : formatText(event, color)
      stream.write(`${scrubSecrets(line, this.secrets)}\n`)
    }
  }
}
