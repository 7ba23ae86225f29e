import {Flags} from '@oclif/core'

import {DbCommand, withoutSessionLimitFlag} from '../cli/base-command.js'
import {migrate, type MigrateResult} from '../lib/schema/migrate.js'

export default class Migrate extends DbCommand<typeof Migrate> {
  static override sessionLimits = 'none' as const
  static override baseFlags = withoutSessionLimitFlag()
  static override summary = "Install or upgrade graphile-worker's schema and the DLQ table."
  static override description = `Runs graphile-worker's own migrations (those of the bundled graphile-worker), then creates or completes <schema>.backfill_dlq, compatible with the Rust backfill crate. Idempotent: a rerun reports "up to date". Concurrent runs are serialised with an advisory lock. A schema migrated further by the Rust graphile_worker (its migration 20) is reported and left as is; a newer breaking migration is refused (exit 4).`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --dry-run --show-sql',
    '<%= config.bin %> <%= command.id %> --schema app_jobs --database-url postgres://app@db/app --json',
  ]

  static override flags = {
    'dry-run': Flags.boolean({summary: 'Report the current revision and what would be applied; change nothing.'}),
    'show-sql': Flags.boolean({summary: 'With --dry-run, print the pending SQL to stdout.', dependsOn: ['dry-run']}),
  }

  async run(): Promise<MigrateResult> {
    const result = await migrate(this.db(), {
      dryRun: this.flags['dry-run'],
      onProgress: (message) => this.out.info(message),
    })
    this.render(result)
    return result
  }

  private render(result: MigrateResult): void {
    const {out} = this
    const schema = `schema "${result.schema}"`
    for (const note of result.notes) out.warn(note)
    if (result.dryRun) {
      // With --show-sql the SQL alone is the result (pipe it into psql); the plan goes to stderr.
      const say = (text: string): void => (this.flags['show-sql'] ? out.info(text) : out.result(text))
      say(
        `${schema}: graphile-worker revision ${result.revisionBefore ?? 'none'} (bundled graphile-worker ${result.graphileWorkerVersion} knows up to ${result.highestKnown})`,
      )
      say(
        result.applied.length > 0
          ? `would apply graphile-worker migrations ${idRange(result.applied)}`
          : 'graphile-worker migrations: up to date',
      )
      say(result.dlq.created.length > 0 ? `would create: ${result.dlq.created.join(', ')}` : 'DLQ objects: up to date')
      if (this.flags['show-sql'] && result.sql) out.result(result.sql)
      return
    }
    if (result.upToDate) {
      out.result(`${schema} is up to date (graphile-worker revision ${result.revisionAfter})`)
      return
    }
    if (result.applied.length > 0)
      out.result(
        `${schema}: applied graphile-worker migrations ${idRange(result.applied)} (revision ${result.revisionBefore ?? 'none'} → ${result.revisionAfter})`,
      )
    if (result.dlq.created.length > 0) out.result(`${schema}: created ${result.dlq.created.join(', ')}`)
  }
}

/** 1..19 for a contiguous run, else a list. */
function idRange(ids: number[]): string {
  const contiguous = ids.every((id, i) => i === 0 || id === (ids[i - 1] ?? 0) + 1)
  return contiguous && ids.length > 2 ? `${ids[0]}..${ids[ids.length - 1]}` : ids.join(', ')
}
