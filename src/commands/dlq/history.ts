import {Flags} from '@oclif/core'

import {age, DlqCommand, shortTime} from '../../cli/dlq.js'
import {since} from '../../cli/flags.js'
import {AUDIT_ACTIONS, dlqHistory, type AuditAction} from '../../lib/dlq/audit.js'
import type {DlqHistoryDocument} from '../../lib/console/operations.js'

export type HistoryResult = DlqHistoryDocument

export default class DlqHistory extends DlqCommand<typeof DlqHistory> {
  static override summary =
    'Show the audit trail: who retried, purged or captured DLQ entries, or removed, failed or rescheduled jobs, when and why.'
  static override description = `One row per run of dlq retry, purge or capture, of jobs remove, fail, run-now or reschedule (actions jobs.remove, jobs.move-to-dlq, jobs.fail, jobs.run-now, jobs.reschedule), of locks clean (locks.clean) and of each job the web console enqueued (jobs.enqueue); a run's batches are summed, newest first: when, the OS user and host, the database role, the reason given, the selection, how many entries or jobs it changed and how many it left alone. --json adds the selection and options of each run; the audit table (backfill_dlq_audit) also keeps the entry and job ids of every batch.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --action retry --since 7d --json',
    '<%= config.bin %> <%= command.id %> --action jobs.move-to-dlq',
  ]

  static override flags = {
    action: Flags.string({options: [...AUDIT_ACTIONS], summary: 'Only runs of this action.'}),
    since: since({summary: 'Only runs since this time (ISO 8601, or a duration ago: 7d).'}),
    limit: Flags.integer({summary: 'Runs shown (default 20).', min: 1, max: 10_000, default: 20}),
  }

  async run(): Promise<HistoryResult> {
    await this.requireDlq()
    const runs = await dlqHistory(this.db(), {
      action: this.flags.action as AuditAction | undefined,
      since: this.flags.since,
      limit: this.flags.limit,
    })
    this.out.table(
      runs,
      [
        {header: 'STARTED', get: (r) => shortTime(r.startedAt)},
        {header: 'AGE', get: (r) => age(r.startedAt), align: 'right'},
        {header: 'ACTION', get: (r) => r.action},
        {header: 'COUNT', get: (r) => String(r.count), align: 'right'},
        {header: 'SKIPPED', get: (r) => (r.skipped > 0 ? String(r.skipped) : ''), align: 'right'},
        {header: 'BY', get: (r) => `${[r.osUser, r.hostname].filter(Boolean).join('@')} (${r.dbUser})`, max: 40},
        {header: 'SELECTION', get: (r) => describe(r.selection), max: 40},
        {header: 'REASON', get: (r) => r.reason ?? '', max: 40},
      ],
      'no DLQ or jobs actions recorded yet',
    )
    return {runs}
  }
}

function describe(selection: unknown): string {
  if (!selection || typeof selection !== 'object') return ''
  return Object.entries(selection as Record<string, unknown>)
    .map(([k, v]) => (v === true ? k : `${k}=${Array.isArray(v) ? v.join(',') : String(v)}`))
    .join(' ')
}
