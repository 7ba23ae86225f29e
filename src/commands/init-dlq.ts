import {Flags} from '@oclif/core'

import {DbCommand, withoutSessionLimitFlag} from '../cli/base-command.js'
import type {GroupCountsRecount} from '../lib/dlq/group-counts.js'
import {initDlq, type InitDlqResult} from '../lib/schema/migrate.js'

export default class InitDlq extends DbCommand<typeof InitDlq> {
  static override sessionLimits = 'none' as const
  static override baseFlags = withoutSessionLimitFlag()
  static override summary =
    'Create <schema>.backfill_dlq (Rust backfill crate compatible), or complete an existing one.'
  static override description = `Creates the schema if needed and the dead letter queue table with the crate's 17 columns and indexes, including the unique partial index on job_key its upserts need. An existing table (from the crate, or from its docs/dlq_schema.sql) keeps its rows; missing indexes and columns are added and VARCHAR columns widened to TEXT. Entries without a failure-group fingerprint (written by the crate) get one, in batches. Idempotent.

With --recount, the failure-group counts that dlq stats and status read are then compared with a fresh count of the entries and the groups that differ corrected, in one transaction that holds DLQ writers (not readers) for one scan of the table: the repair after writes the count triggers did not see (made while one was disabled, or under session_replication_role = replica). With --dry-run it only reports how far they are off.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --schema app_jobs --dry-run',
    '<%= config.bin %> <%= command.id %> --recount --dry-run',
    '<%= config.bin %> <%= command.id %> --recount',
  ]

  static override flags = {
    'dry-run': Flags.boolean({summary: 'Report what would be created; change nothing.'}),
    'show-sql': Flags.boolean({summary: 'With --dry-run, print the SQL that would run.', dependsOn: ['dry-run']}),
    recount: Flags.boolean({
      summary:
        'Then recount the failure-group counts from the entries, correcting any drift (with --dry-run: measure it).',
    }),
  }

  async run(): Promise<InitDlqResult> {
    const result = await initDlq(this.db(), {
      dryRun: this.flags['dry-run'],
      recount: this.flags.recount,
      onProgress: (m) => this.out.info(m),
    })
    const where = `"${result.schema}".backfill_dlq`
    if (result.upToDate) this.out.result(`${where} is up to date`)
    else if (result.dryRun) {
      const summary = `would create: ${result.created.join(', ')}`
      if (this.flags['show-sql']) this.out.info(summary)
      else this.out.result(summary)
      if (this.flags['show-sql']) this.out.result(result.sql)
    } else
      this.out.result(
        `${where}: created ${result.created.join(', ')}${result.tableExisted ? ' (existing rows kept)' : ''}`,
      )
    if (result.recount !== undefined) this.out.result(recountText(result.recount))
    return result
  }
}

function recountText(recount: GroupCountsRecount | null): string {
  if (recount === null) return 'failure-group counts: not there yet (created and counted without --dry-run)'
  const {groups, entries, total} = recount
  if (groups === 0) return `failure-group counts match a fresh count (${total} fingerprinted entries)`
  const one = groups === 1
  const off = (is: string, are: string): string =>
    `${groups} failure group${one ? '' : 's'} ${one ? is : are} off by ${entries} entr${entries === 1 ? 'y' : 'ies'} in total`
  return recount.dryRun
    ? `failure-group counts: ${off('is', 'are')} (${total} fingerprinted entries; run without --dry-run to correct them)`
    : `failure-group counts corrected: ${off('was', 'were')} (${total} fingerprinted entries)`
}
