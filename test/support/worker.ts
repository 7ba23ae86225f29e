import {type ChildProcessWithoutNullStreams, spawn} from 'node:child_process'

import {targetFromUrl} from '../../src/lib/connection.js'
import {Database} from '../../src/lib/db.js'
import {parseSchemaName} from '../../src/lib/identifiers.js'
import {requiredPoolSize} from '../../src/lib/worker/runner.js'
import {BIN, cleanEnv, ROOT} from './cli.js'
import {sql, testDatabaseName, TestSchema, testUrl, urlForDatabase} from './db.js'

export const TASKS_DIR = `${ROOT}/test/fixtures/tasks`

/** A running `backfill worker` process with its output collected line by line. */
export class WorkerProcess {
  readonly child: ChildProcessWithoutNullStreams
  stdout = ''
  stderr = ''
  readonly exited: Promise<{code: number | null; signal: NodeJS.Signals | null}>

  constructor(
    args: string[],
    env: Record<string, string | undefined> = {},
    options: {cwd?: string; databaseUrl?: string | null} = {},
  ) {
    const databaseUrl = options.databaseUrl === undefined ? testUrl() : options.databaseUrl
    this.child = spawn(process.execPath, [BIN, 'worker', ...args], {
      cwd: options.cwd ?? ROOT,
      env: cleanEnv({...(databaseUrl === null ? {} : {DATABASE_URL: databaseUrl}), ...env}),
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => (this.stdout += d))
    this.child.stderr.setEncoding('utf8').on('data', (d: string) => (this.stderr += d))
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({code, signal})))
  }

  /** Resolves when stdout+stderr match, rejects after timeoutMs (with the output so far). */
  async waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const match = (this.stdout + this.stderr).match(pattern)
      if (match) return match
      if (this.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(
          `worker output never matched ${pattern} (exit ${this.child.exitCode}):\n${this.stdout}\n${this.stderr}`,
        )
      }
      await new Promise((r) => setTimeout(r, 25))
    }
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal)
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      this.child.kill('SIGTERM')
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000)
      await this.exited
      clearTimeout(timer)
    }
  }
}

/** A ledger table the test task writes to (one row per run). */
export async function createLedger(t: TestSchema): Promise<string> {
  await t.query(
    `create table ${t.quoted}.test_ledger (job_id bigint not null, attempt int not null, task text, pid int, started_at timestamptz not null default clock_timestamp(), done_at timestamptz)`,
  )
  return `${t.quoted}.test_ledger`
}

export async function addJobs(
  t: TestSchema,
  count: number,
  options: {
    task?: string
    payload?: Record<string, unknown>
    priority?: number
    queue?: string
    maxAttempts?: number
    flags?: string[]
  } = {},
): Promise<void> {
  await t.query(
    `select ${t.quoted}.add_jobs(array(select row($1::text, $2::json, $3::text, null, $4::smallint, null, $5::smallint, $6::text[])::${t.quoted}.job_spec from generate_series(1, $7::int)))`,
    [
      options.task ?? 'work',
      JSON.stringify(options.payload ?? {}),
      options.queue ?? null,
      options.maxAttempts ?? 8,
      options.priority ?? 0,
      options.flags ?? null,
      count,
    ],
  )
}

/**
 * Mocha hooks for in-process worker tests whose worker connects as a login role of its own that
 * owns the schema (graphile's tables use row-level security): cut() is then a database outage
 * for the worker alone (its sessions ended, new ones refused) and restore() ends it.
 */
export function ownRoleWorkerDatabase(
  prefix: string,
  concurrency: number,
): {
  readonly t: TestSchema
  readonly db: Database
  cut(): Promise<void>
  restore(): Promise<void>
  terminate(): Promise<void>
} {
  const role = `${prefix}_${Date.now().toString(36)}`
  let t: TestSchema | undefined
  let db: Database | undefined
  const terminate = async (): Promise<void> => {
    await sql(`select pg_terminate_backend(pid) from pg_stat_activity where usename = $1`, [role])
  }
  const restore = async (): Promise<void> => {
    await sql(`alter role ${role} connection limit -1`)
  }
  before(async () => {
    await sql(`create role ${role} login`)
    await sql(`grant create on database ${testDatabaseName()} to ${role}`)
  })
  after(async () => {
    await sql(`drop owned by ${role}`).catch(() => undefined)
    await sql(`drop role if exists ${role}`).catch(() => undefined)
  })
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix, url: urlForDatabase(testDatabaseName(), role)})
    db = Database.connect({
      target: targetFromUrl(t.url, 'flag-or-env'),
      schema: parseSchemaName(t.schema),
      max: requiredPoolSize({concurrency}),
    })
  })
  afterEach(async () => {
    await restore()
    await db?.end().catch(() => undefined)
    await t?.drop()
  })
  return {
    get t() {
      return t!
    },
    get db() {
      return db!
    },
    async cut() {
      await sql(`alter role ${role} connection limit 0`)
      await terminate()
    },
    restore,
    terminate,
  }
}

/** Jobs locked by these pools. */
export async function countLockedBy(t: TestSchema, poolIds: readonly string[]): Promise<number> {
  const [row] = await t.query<{n: number}>(
    `select count(*)::int as n from ${t.quoted}._private_jobs where locked_by = any($1::text[])`,
    [poolIds],
  )
  return row!.n
}
