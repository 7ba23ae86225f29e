import {quoteIdent, type SchemaName} from '../identifiers.js'
import {backfillDdl} from './backfill-objects.js'
import {graphileBootstrapSql, graphileMigrationSql, graphilePackage} from './graphile-migrations.js'

export interface PrintSchemaOptions {
  /** graphile-worker's migrations (default true). */
  graphile?: boolean
  /** backfill's DLQ and bookkeeping objects (default true). */
  backfill?: boolean
}

/**
 * The complete SQL a deployment-managed setup needs, without a database connection:
 * graphile-worker's bootstrap and migrations exactly as its migrator runs them (each
 * recording its row in `migrations` first, in its own transaction), then our objects.
 * Applied to an empty database it yields the same catalog as `backfill migrate`.
 */
export function printSchemaSql(schema: SchemaName, options: PrintSchemaOptions = {}): string {
  const quoted = quoteIdent(schema)
  const pkg = graphilePackage()
  const parts: string[] = [
    `-- backfill schema for ${quoted}: ${[options.graphile !== false ? `graphile-worker ${pkg.version} migrations 1..${pkg.highest}` : '', options.backfill !== false ? 'the backfill DLQ and bookkeeping tables' : ''].filter(Boolean).join(' and ')}.`,
    '-- Apply to an empty schema with: psql -v ON_ERROR_STOP=1 -f schema.sql',
    '-- To upgrade an existing schema use `backfill migrate` (or `backfill migrate --dry-run --show-sql`).',
    '',
  ]
  if (options.graphile !== false) {
    parts.push('-- graphile-worker bootstrap', graphileBootstrapSql(quoted))
    for (const migration of pkg.migrations) {
      parts.push(`-- graphile-worker migration ${migration.file}${migration.breaking ? ' (breaking)' : ''}`)
      parts.push(graphileMigrationSql(quoted, migration))
    }
  }
  if (options.backfill !== false) {
    parts.push('-- backfill: dead letter queue (readable and writable by the Rust backfill crate) and bookkeeping')
    parts.push(backfillDdl(quoted, schema))
  }
  return parts.join('\n')
}
