import {Flags} from '@oclif/core'

import {DbCommand} from '../../cli/base-command.js'
import {duration, durationDefault} from '../../cli/flags.js'
import {livenessFlags, livenessOptions} from '../../cli/liveness-flags.js'
import {formatDuration} from '../../lib/duration.js'
import {cleanLocks, type CleanLocksOptions, type CleanLocksResult, type PlannedLock} from '../../lib/locks/clean.js'

export default class LocksClean extends DbCommand<typeof LocksClean> {
  static override summary =
    'Release locks whose owner is dead (at once), or stale locks of owners that publish no liveness.'
  static override description = `Dead owners (backfill workers whose presence session is gone and whose heartbeat is stale, Rust workers with a stale heartbeat) lose their locks at once, whatever the age. Owners without liveness information (plain graphile-worker pools, Rust without recovery, hand-made locks) lose a job lock only when it is older than --stale-job-lock-timeout, and a queue lock when it is older than --stale-queue-lock-timeout and none of their jobs in that queue keeps running. Live owners keep their locks unless --force.

Released jobs become runnable at once and keep their attempt count (the interrupted run counts as an attempt, so a job that crashes its worker every time ends in the DLQ); last_error says why the lock was released. No job is ever deleted. Each lock is released only if it is still the very lock that was judged, so running this from two terminals, or while workers run, is safe.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --dry-run',
    '<%= config.bin %> <%= command.id %> --yes --reason "INC-123: host worker-7 died"',
    '<%= config.bin %> <%= command.id %> --owner pool-0a1b2c3d4e5f607182 --force --yes',
    '<%= config.bin %> <%= command.id %> --stale-job-lock-timeout 2h --json --yes',
  ]

  static override flags = {
    'stale-queue-lock-timeout': duration({
      defaultUnit: 's',
      summary: 'Release queue locks of owners without liveness once older than this.',
      ...durationDefault(5 * 60_000),
    }),
    'stale-job-lock-timeout': duration({
      defaultUnit: 's',
      summary: 'Release job locks of owners without liveness once older than this (keep it above your longest job).',
      ...durationDefault(30 * 60_000),
    }),
    owner: Flags.string({summary: 'Only locks of this owner (locked_by); repeatable.', multiple: true}),
    force: Flags.boolean({
      summary: "Also release live owners' locks and unknown owners' locks of any age (the jobs may run twice).",
    }),
    'dry-run': Flags.boolean({summary: 'Show what would be released; change nothing.'}),
    yes: Flags.boolean({char: 'y', summary: 'Do not ask for confirmation.'}),
    reason: Flags.string({summary: 'Why, recorded in the audit trail (dlq history) when the DLQ tables exist.'}),
    ...livenessFlags,
  }

  async run(): Promise<CleanLocksResult> {
    const {flags} = this
    const options: CleanLocksOptions = {
      ...livenessOptions(flags),
      staleQueueLockTimeoutMs: flags['stale-queue-lock-timeout'],
      staleJobLockTimeoutMs: flags['stale-job-lock-timeout'],
      force: flags.force,
      owners: flags.owner,
    }
    const db = this.db()
    const plan = await cleanLocks(db, {...options, dryRun: true})
    for (const warning of plan.warnings) this.out.warn(warning.message)
    const releasing = plan.locks.filter((l) => l.action === 'release')
    if (flags['dry-run'] || releasing.length === 0) {
      // Nothing to release is not a dry run the user asked for: nothing changed either way.
      plan.dryRun = flags['dry-run']
      this.render(plan)
      return plan
    }
    const live = releasing.filter((l) => l.liveness === 'live').length
    if (live > 0) this.out.warn(`${live} of these locks are held by LIVE owners: their jobs may run twice`)
    this.out.info(`would release ${describeCounts(plan.jobLocks, plan.queueLocks)}`)
    await this.confirm({
      yes: flags.yes,
      message: `Release ${describeCounts(plan.jobLocks, plan.queueLocks)} in schema "${this.schema}"?`,
      action: 'release locks',
    })
    const result = await cleanLocks(db, {
      ...options,
      only: releasing.map((l) => l.key),
      audit: {reason: flags.reason},
    })
    this.render(result)
    return result
  }

  private render(result: CleanLocksResult): void {
    const {out} = this
    const released = result.locks.filter((l) => l.action === 'release')
    const verb = result.dryRun ? 'would release' : 'released'
    if (released.length > 0) {
      out.table(released, lockColumns(result.dryRun ? 'WOULD RELEASE' : 'RELEASED'))
    }
    const r = result.released
    const parts = [
      r['dead-owner'].jobs + r['dead-owner'].queues > 0
        ? `${describeCounts(r['dead-owner'].jobs, r['dead-owner'].queues)} of dead owners`
        : '',
      r['stale-unknown'].jobs + r['stale-unknown'].queues > 0
        ? `${describeCounts(r['stale-unknown'].jobs, r['stale-unknown'].queues)} of owners without liveness past the timeouts`
        : '',
      r.forced.jobs + r.forced.queues > 0 ? `${describeCounts(r.forced.jobs, r.forced.queues)} forced` : '',
    ].filter(Boolean)
    const k = result.kept
    const kept = [
      k['live-owner'].jobs + k['live-owner'].queues > 0
        ? `${k['live-owner'].jobs + k['live-owner'].queues} of live owners`
        : '',
      k['unknown-not-stale'].jobs + k['unknown-not-stale'].queues > 0
        ? `${k['unknown-not-stale'].jobs + k['unknown-not-stale'].queues} of owners without liveness, younger than ${formatDuration(result.timeouts.jobMs)} (jobs) / ${formatDuration(result.timeouts.queueMs)} (queues)`
        : '',
      k['queue-in-use'].queues > 0 ? `${k['queue-in-use'].queues} queue locks whose job still runs` : '',
      k['not-confirmed'].jobs + k['not-confirmed'].queues > 0
        ? `${k['not-confirmed'].jobs + k['not-confirmed'].queues} that appeared after the confirmation`
        : '',
    ].filter(Boolean)
    const skipped = result.skipped.jobs + result.skipped.queues
    if (parts.length === 0 && skipped > 0) out.result(`released nothing in schema "${result.schema}"`)
    else if (parts.length === 0) out.result(`nothing to release in schema "${result.schema}"`)
    else if (result.dryRun) out.result(`${verb} ${parts.join('; ')} (dry run: nothing changed)`)
    else out.result(`${verb} ${parts.join('; ')}`)
    if (kept.length > 0) out.info(`kept ${kept.join('; ')}`)
    if (skipped > 0) {
      out.info(
        `left ${describeCounts(result.skipped.jobs, result.skipped.queues)} that changed before they could be released (taken again, owner back, or another cleaner was first)`,
      )
    }
  }
}

function lockColumns(
  title: string,
): {header: string; get: (l: PlannedLock) => string; align?: 'left' | 'right'; max?: number}[] {
  return [
    {header: title, get: (l) => l.kind},
    {header: 'JOB', get: (l) => l.jobId ?? '-', align: 'right'},
    {header: 'QUEUE', get: (l) => l.queueName ?? '-', max: 40},
    {header: 'TASK', get: (l) => l.taskIdentifier ?? '-', max: 40},
    {header: 'OWNER', get: (l) => l.owner ?? '(none)'},
    {header: 'AGE', get: (l) => formatDuration(l.ageMs), align: 'right'},
    {header: 'WHY', get: (l) => l.why},
  ]
}

function describeCounts(jobs: number, queues: number): string {
  const parts = [
    jobs > 0 || queues === 0 ? `${jobs} job lock${jobs === 1 ? '' : 's'}` : '',
    queues > 0 ? `${queues} queue lock${queues === 1 ? '' : 's'}` : '',
  ].filter(Boolean)
  return parts.join(' and ')
}
