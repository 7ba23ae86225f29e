import {Flags} from '@oclif/core'

import {DbCommand} from '../cli/base-command.js'
import {duration, durationDefault} from '../cli/flags.js'
import {livenessFlags, livenessOptions} from '../cli/liveness-flags.js'
import {EXIT_CODES} from '../lib/errors.js'
import {runChecks, type CheckResult, type CheckThresholds} from '../lib/health/check.js'

export default class Check extends DbCommand<typeof Check> {
  static override summary =
    'Health gate for cron, CI and alerting: exit 0 when every threshold holds, 6 when any fails.'
  static override description = `Measures only what the given thresholds need. Each failed threshold prints one line on stdout (nothing when healthy; --quiet hides the summary on stderr); --json prints every check with what was measured. Exit codes: 0 all hold, 6 a threshold failed, 2 bad flags or no threshold, 3 cannot connect, 4 schema not migrated (with --require-migrated that is a failed check instead).`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --max-ready-age 5m --max-dlq 0 --max-dead-locks 0',
    '<%= config.bin %> <%= command.id %> --require-migrated --min-workers 2 --quiet || page-oncall',
    '<%= config.bin %> <%= command.id %> --max-exhausted 0 --max-stale-locks 0 --json',
  ]

  static override flags = {
    'max-ready-age': duration({
      defaultUnit: 's',
      summary: 'Fail when the oldest ready job has waited longer than this (e.g. 5m; a bare number is seconds).',
    }),
    'max-ready': Flags.integer({summary: 'Fail when more jobs than this are ready (backlog).', min: 0}),
    'max-dlq': Flags.integer({summary: 'Fail when the DLQ holds more entries than this (or has no table).', min: 0}),
    'max-exhausted': Flags.integer({summary: 'Fail when more exhausted jobs than this wait for DLQ capture.', min: 0}),
    'max-dead-locks': Flags.integer({
      summary: 'Fail when dead workers hold more locks (jobs + queues) than this.',
      min: 0,
    }),
    'max-stale-locks': Flags.integer({
      summary: 'Fail when owners without liveness hold more locks past the stale timeouts than this.',
      min: 0,
    }),
    'stale-queue-lock-timeout': duration({
      defaultUnit: 's',
      summary: 'Queue lock age that counts as stale for --max-stale-locks.',
      ...durationDefault(5 * 60_000),
    }),
    'stale-job-lock-timeout': duration({
      defaultUnit: 's',
      summary: 'Job lock age that counts as stale for --max-stale-locks.',
      ...durationDefault(30 * 60_000),
    }),
    'min-workers': Flags.integer({
      summary: 'Fail when fewer workers than this are live (backfill workers, Rust workers with heartbeats).',
      min: 0,
    }),
    'require-migrated': Flags.boolean({
      summary: "Fail unless graphile-worker is installed with no pending migration and backfill's objects exist.",
    }),
    ...livenessFlags,
  }

  async run(): Promise<CheckResult> {
    const {flags} = this
    const thresholds: CheckThresholds = {
      ...livenessOptions(flags),
      maxReadyAgeMs: flags['max-ready-age'],
      maxReady: flags['max-ready'],
      maxDlq: flags['max-dlq'],
      maxExhausted: flags['max-exhausted'],
      maxDeadLocks: flags['max-dead-locks'],
      maxStaleLocks: flags['max-stale-locks'],
      staleQueueLockTimeoutMs: flags['stale-queue-lock-timeout'],
      staleJobLockTimeoutMs: flags['stale-job-lock-timeout'],
      minWorkers: flags['min-workers'],
      requireMigrated: flags['require-migrated'] || undefined,
    }
    const result = await runChecks(this.db(), thresholds)
    for (const check of result.checks) {
      if (check.status === 'fail') this.out.result(`FAIL ${check.message}`)
      else this.out.info(`${check.status === 'pass' ? 'ok  ' : 'skip'} ${check.message}`)
    }
    if (result.ok) this.out.success(`all ${result.checks.length} checks passed`)
    else {
      this.out.info(`${result.failed} of ${result.checks.length} checks failed`)
      process.exitCode = EXIT_CODES.checkFailed
    }
    return result
  }
}
