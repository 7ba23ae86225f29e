import {Flags} from '@oclif/core'

import {DbCommand, withoutSessionLimitFlag} from '../cli/base-command.js'
import {initDlq, type InitDlqResult} from '../lib/schema/migrate.js'

export default class InitDlq extends DbCommand<typeof InitDlq> {
  static override sessionLimits = 'none' as const
  static override baseFlags = withoutSessionLimitFlag()
  static override summary =
    'Create <schema>.backfill_dlq (Rust backfill crate compatible), or complete an existing one.'
  static override description = `Creates the schema if needed and the dead letter queue table with the crate's 17 columns and indexes, including the unique partial index on job_key its upserts need. An existing table (from the crate, or from its docs/dlq_schema.sql) keeps its rows; missing indexes and columns are added and VARCHAR columns widened to TEXT. Entries without a failure-group fingerprint (written by the crate) get one, in batches. Idempotent.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --schema app_jobs --dry-run',
  ]

  static override flags = {
    'dry-run': Flags.boolean({summary: 'Report what would be created; change nothing.'}),
    'show-sql': Flags.boolean({summary: 'With --dry-run, print the SQL that would run.', dependsOn: ['dry-run']}),
  }

  async run(): Promise<InitDlqResult> {
    const result = await initDlq(this.db(), {dryRun: this.flags['dry-run'], onProgress: (m) => this.out.info(m)})
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
    return result
  }
}
