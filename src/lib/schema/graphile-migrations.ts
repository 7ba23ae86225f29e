import {existsSync, readFileSync, readdirSync} from 'node:fs'
import {createRequire} from 'node:module'
import path from 'node:path'

/** One of graphile-worker's own migration files, as the installed package ships it. */
export interface GraphileMigration {
  readonly id: number
  readonly file: string
  readonly breaking: boolean
  /** Migration text with the schema placeholder replaced by the quoted schema. */
  sql(quotedSchema: string): string
}

interface GraphilePackage {
  readonly version: string
  readonly migrations: readonly GraphileMigration[]
  readonly highest: number
}

let cached: GraphilePackage | undefined

/**
 * Reads the migrations from the installed graphile-worker package's sql/ folder (the
 * same text graphile compiles into its own migrate; 0.18's exports map hides dist/,
 * the files on disk stay readable), so `schema print` and `migrate` never drift apart.
 */
export function graphilePackage(): GraphilePackage {
  if (cached) return cached
  const require = createRequire(import.meta.url)
  const entry = require.resolve('graphile-worker')
  let dir = path.dirname(entry)
  while (!existsSync(path.join(dir, 'package.json')) || path.basename(dir) === 'dist') {
    if (path.dirname(dir) === dir) throw new Error(`cannot locate the graphile-worker package directory from ${entry}`)
    dir = path.dirname(dir)
  }
  const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as {version: string}
  const sqlDir = path.join(dir, 'sql')
  const files = readdirSync(sqlDir)
    .filter((f) => /^\d{6}\.sql$/.test(f))
    .sort()
  const migrations = files.map((file): GraphileMigration => {
    const text = readFileSync(path.join(sqlDir, file), 'utf8')
    return {
      id: Number.parseInt(file.slice(0, 6), 10),
      file,
      // graphile-worker's own rule (lib.ts BREAKING_MIGRATIONS).
      breaking: text.startsWith('--! breaking'),
      sql: (quotedSchema) => text.replace(/:GRAPHILE_WORKER_SCHEMA\b/g, quotedSchema),
    }
  })
  cached = {version: pkg.version, migrations, highest: Math.max(0, ...migrations.map((m) => m.id))}
  return cached
}

/**
 * Names graphile-worker's migrations create in the schema (tables, views, the job_spec
 * type, renamed tables, functions), read from its SQL: a fresh install over any of them
 * fails half-way or replaces another tool's object. The ledger (migrations) is left out.
 */
export function graphileObjectNames(): {relations: string[]; functions: string[]} {
  const relations = new Set<string>()
  const functions = new Set<string>()
  for (const m of graphilePackage().migrations) {
    const text = m.sql('S')
    for (const [, name] of text.matchAll(/\bcreate\s+(?:table|view|type)\s+S\.(\w+)/gi))
      relations.add(name!.toLowerCase())
    for (const [, name] of text.matchAll(/\brename\s+to\s+(\w+)/gi)) relations.add(name!.toLowerCase())
    for (const [, name] of text.matchAll(/\bcreate\s+(?:or\s+replace\s+)?function\s+S\.(\w+)/gi))
      functions.add(name!.toLowerCase())
  }
  relations.delete('migrations')
  return {relations: [...relations].sort(), functions: [...functions].sort()}
}

/** graphile-worker's bootstrap DDL (migrate.ts installSchema), verbatim in effect. */
export function graphileBootstrapSql(quotedSchema: string): string {
  return `create schema if not exists ${quotedSchema};
create table if not exists ${quotedSchema}.migrations(
  id int primary key,
  ts timestamptz default now() not null
);
alter table ${quotedSchema}.migrations add column if not exists breaking boolean not null default false;
`
}

/** The SQL graphile-worker runs for one migration: record it first, then apply, in one transaction. */
export function graphileMigrationSql(quotedSchema: string, migration: GraphileMigration): string {
  return `begin;
insert into ${quotedSchema}.migrations (id, breaking) values (${migration.id}, ${migration.breaking});
${migration.sql(quotedSchema).trimEnd()}
commit;
`
}
