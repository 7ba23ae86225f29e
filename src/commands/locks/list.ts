import {Flags} from '@oclif/core'

import {DbCommand} from '../../cli/base-command.js'
import {livenessFlags, livenessOptions} from '../../cli/liveness-flags.js'
import {formatDuration} from '../../lib/duration.js'
import {locksReport, type LocksListResult} from '../../lib/locks/report.js'
import type {Liveness} from '../../lib/locks/owners.js'

export type {LocksListResult} from '../../lib/locks/report.js'

export default class LocksList extends DbCommand<typeof LocksList> {
  static override summary = 'Show job and queue locks with their owner, runtime and whether the owner is alive.'
  static override description = `Lists every locked job and locked serial queue: the owner (graphile-worker's locked_by: a pool id), its runtime family from the id's prefix (pool-/otpool-/worker- Node, graphile_worker_ Rust, other), the lock's age, and the owner's liveness. live: a backfill worker's presence session is connected or its heartbeat is fresh, or a Rust worker's _private_workers heartbeat is fresh. dead: the owner was a backfill worker (or a Rust worker with heartbeats) and that proof is gone. unknown: no liveness information (plain graphile-worker, Rust without recovery, hand-made locks). Read-only.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --liveness dead',
    '<%= config.bin %> <%= command.id %> --owner pool-0a1b2c3d4e5f607182 --json',
  ]

  static override flags = {
    owner: Flags.string({summary: 'Only locks of this owner (locked_by); repeatable.', multiple: true}),
    liveness: Flags.string({
      summary: 'Only locks whose owner has this liveness; repeatable.',
      options: ['live', 'dead', 'unknown'],
      multiple: true,
    }),
    limit: Flags.integer({summary: 'Show at most this many locks (oldest first).', default: 100, min: 1}),
    ...livenessFlags,
  }

  async run(): Promise<LocksListResult> {
    const result = await locksReport(this.db(), {
      ...livenessOptions(this.flags),
      owners: this.flags.owner,
      liveness: this.flags.liveness as Liveness[] | undefined,
      limit: this.flags.limit,
    })
    this.render(result)
    return result
  }

  private render(result: LocksListResult): void {
    const {out} = this
    if (result.locks.length === 0 && result.totals.jobs + result.totals.queues === 0) {
      out.success(`no locks in schema "${result.schema}"`)
      return
    }
    out.table(result.owners, [
      {header: 'OWNER', get: (o) => o.owner ?? '(none)'},
      {header: 'RUNTIME', get: (o) => o.family},
      {header: 'LIVENESS', get: (o) => o.liveness},
      {header: 'JOBS', get: (o) => String(o.jobLocks), align: 'right'},
      {header: 'QUEUES', get: (o) => String(o.queueLocks), align: 'right'},
      {header: 'OLDEST', get: (o) => formatDuration(o.oldestLockAgeMs), align: 'right'},
      {header: 'WHY', get: (o) => o.reason},
    ])
    if (result.locks.length > 0) {
      out.result('')
      out.table(result.locks, [
        {header: 'KIND', get: (l) => l.kind},
        {header: 'JOB', get: (l) => l.jobId ?? '-', align: 'right'},
        {header: 'QUEUE', get: (l) => l.queueName ?? '-', max: 40},
        {header: 'TASK', get: (l) => l.taskIdentifier ?? '-', max: 40},
        {header: 'OWNER', get: (l) => l.owner ?? '(none)'},
        {header: 'LIVENESS', get: (l) => l.liveness},
        {header: 'AGE', get: (l) => formatDuration(l.ageMs), align: 'right'},
        {header: 'ATTEMPT', get: (l) => (l.attempts === null ? '' : `${l.attempts}/${l.maxAttempts}`), align: 'right'},
      ])
    }
    const {byLiveness, jobs, queues} = result.totals
    out.info(
      `${jobs + queues} locks (${jobs} job, ${queues} queue): ${byLiveness.dead} held by dead owners, ${byLiveness.unknown} by owners without liveness information, ${byLiveness.live} by live owners${result.omitted > 0 ? ` (${result.omitted} not shown)` : ''}`,
    )
    if (byLiveness.dead > 0) out.info(`release the dead owners' locks now: backfill locks clean${this.schemaFlag()}`)
    if (!result.evidence.registry)
      out.info(
        `no backfill_workers table in this schema: backfill workers' liveness cannot be proven (run backfill migrate${this.schemaFlag()})`,
      )
  }

  private schemaFlag(): string {
    return this.schema === 'graphile_worker' ? '' : ` --schema ${this.schema}`
  }
}
