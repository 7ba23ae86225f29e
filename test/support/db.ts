import {randomBytes} from 'node:crypto'

import pg from 'pg'

import {targetFromUrl} from '../../src/lib/connection.js'
import {Database} from '../../src/lib/db.js'
import {parseSchemaName, quoteIdent} from '../../src/lib/identifiers.js'
import {migrate} from '../../src/lib/schema/migrate.js'

export function testUrl(): string {
  const url = process.env.TEST_DATABASE_URL
  if (!url) throw new Error('TEST_DATABASE_URL is not set (the mocha global setup sets it)')
  return url
}

/** A URL on the same server for another database (embedded: socket URL; else swap the path). */
export function urlForDatabase(database: string, user?: string): string {
  const url = testUrl()
  const parsed = /^(postgres(?:ql)?:\/\/)([^@/]*@)?([^/?]*)\/([^?]*)(\?.*)?$/.exec(url)
  if (!parsed) throw new Error(`cannot derive a URL from ${url}`)
  const [, scheme, auth, host, , query] = parsed
  const userPart = user ? `${user}@` : (auth ?? '')
  return `${scheme}${userPart}${host}/${database}${query ?? ''}`
}

/** The test database's name (the embedded harness creates backfill_test; TEST_DATABASE_URL may name another). */
export function testDatabaseName(): string {
  const match = /^postgres(?:ql)?:\/\/[^/]*\/([^?]*)/.exec(testUrl())
  return decodeURIComponent(match?.[1] ?? '') || 'postgres'
}

export function uniqueName(prefix = 't'): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`
}

/** One query on the test database with a short-lived client. */
export async function sql<R extends pg.QueryResultRow = Record<string, unknown>>(
  text: string,
  params: unknown[] = [],
  url = testUrl(),
): Promise<R[]> {
  const client = new pg.Client({connectionString: url})
  await client.connect()
  try {
    return (await client.query<R>(text, params)).rows
  } finally {
    await client.end()
  }
}

/** A job as graphile stores it, with its task and queue names resolved. */
export interface JobRow {
  id: string
  task: string
  queue: string | null
  payload: unknown
  priority: number
  max_attempts: number
  attempts: number
  key: string | null
  flags: Record<string, boolean> | null
  run_at: Date
  revision: number
  locked_at: Date | null
}

/** A schema of its own for one test: optionally migrated, dropped by drop(). */
export class TestSchema {
  readonly schema: string
  readonly db: Database
  readonly url: string

  private constructor(schema: string, url: string) {
    this.schema = schema
    this.url = url
    this.db = Database.connect({target: targetFromUrl(url, 'flag-or-env'), schema: parseSchemaName(schema), max: 6})
  }

  static async create(options: {migrated?: boolean; prefix?: string; url?: string} = {}): Promise<TestSchema> {
    const test = new TestSchema(uniqueName(options.prefix ?? 't'), options.url ?? testUrl())
    if (options.migrated) await migrate(test.db)
    return test
  }

  get quoted(): string {
    return quoteIdent(this.schema)
  }

  async query<R extends pg.QueryResultRow = Record<string, unknown>>(
    text: string,
    params: unknown[] = [],
  ): Promise<R[]> {
    return (await this.db.pool.query<R>(text, params)).rows
  }

  /** Every job in the schema, oldest id first. */
  async jobs(): Promise<JobRow[]> {
    return this.query<JobRow>(
      `select j.id, t.identifier as task, q.queue_name as queue, j.payload, j.priority, j.max_attempts, j.attempts, j.key, j.flags, j.run_at, j.revision, j.locked_at
       from ${this.quoted}._private_jobs j join ${this.quoted}._private_tasks t on t.id = j.task_id
       left join ${this.quoted}._private_job_queues q on q.id = j.job_queue_id order by j.id`,
    )
  }

  async drop(): Promise<void> {
    await this.db.pool.query(`drop schema if exists ${this.quoted} cascade`).catch(() => undefined)
    await this.db.end()
  }
}

export async function createDatabase(name: string): Promise<string> {
  await sql(`create database ${quoteIdent(name)}`)
  return urlForDatabase(name)
}

export async function dropDatabase(name: string): Promise<void> {
  await sql(`drop database if exists ${quoteIdent(name)} with (force)`)
}
