import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {DEFAULT_SCHEMA, parseSchemaName} from '../../lib/identifiers.js'
import {printSchemaSql} from '../../lib/schema/print.js'

export interface SchemaPrintResult {
  schema: string
  parts: ('graphile' | 'backfill')[]
  sql: string
}

export default class SchemaPrint extends BaseCommand<typeof SchemaPrint> {
  static override summary = 'Print the SQL that installs the schema (no database connection needed).'
  static override description = `For deployment-managed setups: graphile-worker's migrations in order, each recording its row in <schema>.migrations as graphile-worker itself does (so a worker started later finds the schema up to date), followed by the DLQ DDL. Apply with psql -v ON_ERROR_STOP=1 -f -.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> > schema.sql',
    '<%= config.bin %> <%= command.id %> --schema app_jobs | psql -v ON_ERROR_STOP=1 -f - "$DATABASE_URL"',
    '<%= config.bin %> <%= command.id %> --dlq-only',
  ]

  static override flags = {
    schema: Flags.string({
      env: 'GRAPHILE_WORKER_SCHEMA',
      default: DEFAULT_SCHEMA,
      summary: 'Schema name to generate SQL for.',
    }),
    'dlq-only': Flags.boolean({summary: 'Only the backfill DLQ objects.', exclusive: ['graphile-only']}),
    'graphile-only': Flags.boolean({summary: "Only graphile-worker's migrations.", exclusive: ['dlq-only']}),
  }

  async run(): Promise<SchemaPrintResult> {
    const schema = parseSchemaName(this.flags.schema)
    const graphile = !this.flags['dlq-only']
    const backfill = !this.flags['graphile-only']
    const sql = printSchemaSql(schema, {graphile, backfill})
    this.out.result(sql)
    return {
      schema,
      parts: [...(graphile ? ['graphile' as const] : []), ...(backfill ? ['backfill' as const] : [])],
      sql,
    }
  }
}
