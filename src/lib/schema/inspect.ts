import type {Database} from '../db.js'
import {NotMigratedError, PermissionError} from '../errors.js'
import {quoteIdent} from '../identifiers.js'
import {inspectCatalog, legacyMigrationRows, migrationRows} from '../sql/schema.js'
import {type BackfillCatalog, missingObjects} from './backfill-objects.js'
import {graphilePackage} from './graphile-migrations.js'

export interface MigrationRow {
  id: number
  breaking: boolean
  ts: Date
}

/** What is installed in one schema, read from the catalog only (never writes). */
export interface SchemaInspection {
  schema: string
  schemaExists: boolean
  graphile: {
    /** graphile-worker's job table exists (the schema is usable for jobs). */
    installed: boolean
    migrationsTable: boolean
    /** The ledger has graphile ≥ 0.16's breaking column. */
    breakingColumn: boolean
    /**
     * A `migrations` table that is not graphile-worker's ledger (another tool's: columns
     * other than id, ts, breaking), described by its columns; its rows are not read.
     */
    foreignLedger: string | null
    /** Highest applied migration id, null when none. */
    revision: number | null
    latestBreaking: number | null
    migrations: MigrationRow[]
    /** Version of the graphile-worker package bundled with backfill, and its highest migration. */
    packageVersion: string
    highestKnown: number
    /** Known migrations graphile would still apply (ids above the revision). */
    pending: number[]
    /** Applied ids this graphile-worker does not know (e.g. the Rust port's 20). */
    unknown: number[]
    /** The Rust port's migration 20 objects. */
    rustWorkersTable: boolean
    functions: string[]
    /**
     * graphile's tables whose rows row-level security hides from the connected role (it
     * neither owns them nor bypasses RLS, and no policy grants it rows): reads see none.
     */
    rowSecurityHidden: string[]
    /** Owner of graphile's tables (null when not installed). */
    tablesOwner: string | null
    /** The role this connection acts as (current_user). */
    role: string
  }
  backfill: {
    catalog: BackfillCatalog
    dlqExists: boolean
    /** Objects `init-dlq` would create or complete. */
    missing: string[]
    /** The missing objects commands need (performance-only indexes left out). */
    missingRequired: string[]
  }
}

export interface InspectOptions {
  /**
   * Refuse (PermissionError) before reading anything when row-level security hides
   * graphile's rows from this role, instead of letting every count read zero.
   */
  requireRowAccess?: boolean
}

export async function inspectSchema(db: Database, options: InspectOptions = {}): Promise<SchemaInspection> {
  const row = await db.one(inspectCatalog, [db.schema])
  if (options.requireRowAccess && row.relations.includes('_private_jobs'))
    assertRowAccess(db.schema, {hidden: row.row_hidden, owner: row.tables_owner, role: row.role_name})
  const relations = new Set(row.relations)
  const columnList = (row.columns ?? []) as {table: string; column: string; type: string}[]
  const columns = new Map(columnList.map((c) => [`${c.table}.${c.column}`, c.type]))
  const dlqTriggers = new Map(Object.entries((row.dlq_triggers ?? {}) as Record<string, string>))
  const catalog: BackfillCatalog = {
    schemaExists: row.schema_exists,
    relations,
    columns,
    dlqTriggers,
    functions: new Set(row.functions),
    countsFunctionSecure: row.counts_function_secure,
  }
  const migrationsTable = relations.has('migrations')
  const breakingColumn = columns.has('migrations.breaking')
  const foreignLedger = migrationsTable ? describeForeignLedger(columnList) : null
  let migrations: MigrationRow[] = []
  if (migrationsTable && foreignLedger === null)
    migrations = await db.rows(breakingColumn ? migrationRows : legacyMigrationRows, [])
  const pkg = graphilePackage()
  const revision = migrations.length > 0 ? Math.max(...migrations.map((m) => m.id)) : null
  const breakingIds = migrations.filter((m) => m.breaking).map((m) => m.id)
  const latestBreaking = breakingIds.length > 0 ? Math.max(...breakingIds) : null
  return {
    schema: db.schema,
    schemaExists: row.schema_exists,
    graphile: {
      installed: relations.has('_private_jobs'),
      migrationsTable,
      breakingColumn,
      foreignLedger,
      revision,
      latestBreaking,
      migrations,
      packageVersion: pkg.version,
      highestKnown: pkg.highest,
      // graphile applies every known migration above max(id); gaps are never filled.
      pending: pkg.migrations.filter((m) => revision === null || m.id > revision).map((m) => m.id),
      unknown: migrations.filter((m) => m.id > pkg.highest).map((m) => m.id),
      rustWorkersTable: relations.has('_private_workers'),
      functions: row.functions,
      rowSecurityHidden: row.row_hidden,
      tablesOwner: row.tables_owner,
      role: row.role_name,
    },
    backfill: {
      catalog,
      dlqExists: relations.has('backfill_dlq'),
      missing: missingObjects(catalog).map((o) => o.name),
      missingRequired: missingObjects(catalog)
        .filter((o) => !o.advisory)
        .map((o) => o.name),
    },
  }
}

export interface RequireOptions {
  /** Also require the DLQ table and backfill's bookkeeping tables. */
  dlq?: boolean
}

/**
 * Precondition for commands that read or operate on jobs: refuses (without creating
 * anything) when graphile-worker's schema, or the DLQ when asked, is missing.
 */
export async function requireMigrated(db: Database, options: RequireOptions = {}): Promise<SchemaInspection> {
  const inspection = await inspectSchema(db, {requireRowAccess: true})
  const flag = db.schema === 'graphile_worker' ? '' : ` --schema ${db.schema}`
  if (!inspection.graphile.installed) {
    throw new NotMigratedError(
      inspection.schemaExists
        ? `schema "${db.schema}" exists but graphile-worker is not installed in it`
        : `schema "${db.schema}" does not exist in database "${db.target.database}"`,
      {
        suggestions: [
          `run: backfill migrate${flag}`,
          `or check ${db.labels.schema ?? 'the schema name'} and ${db.labels.connection ?? 'the connection settings'}`,
        ],
      },
    )
  }
  if (options.dlq && inspection.backfill.missingRequired.length > 0) {
    const what = inspection.backfill.dlqExists
      ? `backfill's DLQ objects are incomplete in schema "${db.schema}" (missing: ${inspection.backfill.missingRequired.join(', ')})`
      : `the dead letter queue table "${db.schema}".backfill_dlq does not exist`
    throw new NotMigratedError(what, {suggestions: [`run: backfill init-dlq${flag} (or backfill migrate${flag})`]})
  }
  return inspection
}

/**
 * graphile-worker enables row-level security on its tables and defines no policy: a role
 * that is not their owner (nor a member of it) and lacks BYPASSRLS sees no rows even with
 * every GRANT, so counts read 0 and workers find nothing. Refuse rather than report zero.
 */
export function assertRowAccess(schema: string, facts: {hidden: string[]; owner: string | null; role: string}): void {
  if (facts.hidden.length === 0) return
  const role = hintIdent(facts.role)
  const owner = facts.owner === null ? '<owner of the tables>' : hintIdent(facts.owner)
  throw new PermissionError(
    `role "${facts.role}" cannot see the jobs in schema "${schema}": graphile-worker enables row-level security on ${facts.hidden.join(', ')} and this role neither owns them nor bypasses it, so every count would read 0`,
    {
      code: 'E_ROW_SECURITY',
      suggestions: [
        `run backfill as the tables' owner${facts.owner === null ? '' : ` (${facts.owner})`}, or make this role a member of it: GRANT ${owner} TO ${role};`,
        `or, as a superuser: ALTER ROLE ${role} BYPASSRLS; (table GRANTs alone are not enough)`,
      ],
      details: {role: facts.role, owner: facts.owner, tables: facts.hidden},
    },
  )
}

function hintIdent(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : quoteIdent(name)
}

/** graphile-worker's ledger is (id int, ts timestamptz[, breaking bool]); anything else is another tool's. */
function describeForeignLedger(columnList: {table: string; column: string; type: string}[]): string | null {
  const ledger = columnList.filter((c) => c.table === 'migrations')
  const expected: Record<string, string> = {id: 'integer', ts: 'timestamp with time zone', breaking: 'boolean'}
  const graphile =
    ledger.some((c) => c.column === 'id') &&
    ledger.some((c) => c.column === 'ts') &&
    ledger.every((c) => expected[c.column] === c.type)
  return graphile ? null : `columns ${ledger.map((c) => `${c.column} ${c.type}`).join(', ') || '(none)'}`
}

/**
 * graphile-worker's pending migration 19 would stop old Rust workers (graphile_worker <= 0.11.2)
 * on this schema: it is at revision 16-18, where only those hold locks as `graphile_worker_…`.
 * The test `migrate` refuses on and `schema status` reports (given such lock owners).
 */
export function pending19BlocksOldRust(graphile: SchemaInspection['graphile']): boolean {
  return graphile.revision !== null && graphile.revision >= 16 && graphile.pending.includes(19)
}
