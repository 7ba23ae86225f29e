import {randomBytes} from 'node:crypto'

import pg from 'pg'

import type {ConnectionTarget} from '../connection.js'
import {Database} from '../db.js'
import {PermissionError} from '../errors.js'
import {quoteIdent, type SchemaName} from '../identifiers.js'

/** Where a benchmark runs: its own database when the role may create one, else a schema beside the queue. */
export interface BenchPlace {
  db: Database
  /** The database the benchmark ran in. */
  database: string
  throwawayDatabase: boolean
  /** Why the benchmark shares the target database (undefined for a throwaway one). */
  sharedBecause: string | undefined
  /** Closes what was opened and drops the throwaway database (the schema is the caller's). */
  release(): Promise<void>
}

/**
 * A throwaway database beside the target's (same server and credentials). Migrating a schema
 * announces the migration on graphile-worker's `worker:migrate` channel, which every plain
 * graphile-worker pool of the same database hears, whatever its schema, and stops on; NOTIFY
 * stays inside one database, so a benchmark in a database of its own disturbs no one.
 * Falls back to the target database (with the reason) when the role may not create one.
 */
export async function benchPlace(
  base: Database,
  schema: SchemaName,
  options: {sameDatabase: boolean; poolSize: number},
): Promise<BenchPlace> {
  const shared = (because: string): BenchPlace => ({
    db: base.withSchema(schema),
    database: base.target.database,
    throwawayDatabase: false,
    sharedBecause: because,
    release: async () => undefined,
  })
  if (options.sameDatabase) return shared('asked for (--same-database or --schema)')
  const name = `backfill_bench_${randomBytes(4).toString('hex')}`
  const connectionString =
    base.target.connectionString === undefined ? undefined : withDatabase(base.target.connectionString, name)
  if (connectionString === null) return shared('the connection string names no database that can be swapped')
  try {
    await base.execScript(`create database ${quoteIdent(name)}`)
  } catch (error) {
    if (error instanceof PermissionError) return shared(`role "${base.target.user}" may not create databases`)
    throw error
  }
  const pool = new pg.Pool({
    ...(connectionString === undefined ? {database: name} : {connectionString}),
    application_name: 'backfill-bench',
    max: options.poolSize,
    connectionTimeoutMillis: 10_000,
  })
  pool.on('error', () => undefined)
  const target: ConnectionTarget = {
    ...base.target,
    connectionString,
    database: name,
    display: base.target.display.replace(base.target.database, name),
  }
  return {
    db: Database.fromPool(pool, {target, schema, preparedStatements: base.preparedStatements}),
    database: name,
    throwawayDatabase: true,
    sharedBecause: undefined,
    release: async () => {
      await pool.end().catch(() => undefined)
      await base.execScript(`drop database if exists ${quoteIdent(name)}`)
    },
  }
}

/**
 * The same connection string for another database: URLs get a new path, key/value strings a
 * new dbname. null when the shape is not one of those (the caller then stays where it is).
 */
export function withDatabase(connectionString: string, database: string): string | null {
  const scheme = /^postgres(?:ql)?:\/\//i.exec(connectionString)
  if (scheme) {
    // The authority ends at the first / or ? after the user-info (up to the last @: passwords may hold / or ?).
    const at = connectionString.lastIndexOf('@')
    const from = Math.max(scheme[0].length, at + 1)
    const rest = connectionString.slice(from)
    const end = rest.search(/[/?#]/)
    const authority = connectionString.slice(0, from + (end < 0 ? rest.length : end))
    const tail = end < 0 ? '' : rest.slice(end)
    const query = tail.startsWith('/') ? tail.slice(tail.search(/[?#]|$/)) : tail
    return `${authority}/${encodeURIComponent(database)}${query}`
  }
  if (/^\s*\w+\s*=/.test(connectionString)) {
    const value = `dbname='${database.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`
    return /(^|\s)dbname\s*=/.test(connectionString)
      ? connectionString.replace(/(^|\s)dbname\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/, `$1${value}`)
      : `${connectionString} ${value}`
  }
  return null
}
