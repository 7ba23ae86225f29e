import {createHash} from 'node:crypto'

import pg from 'pg'

import type {ConnectionTarget} from './connection.js'
import {mapPgError, type PgErrorContext} from './pg-errors.js'
import {quoteIdent, type SchemaName} from './identifiers.js'
import type {ColumnSpec, ParamSpec, ParamsOf, RowOf, Statement} from './sql/statement.js'

export interface PoolOptions {
  applicationName?: string
  /** Maximum connections in the pool (pg's default is 10). */
  max?: number
  connectionTimeoutMillis?: number
  /** Server-side limits on every session of the pool. */
  limits?: SessionLimits
}

/**
 * PostgreSQL's own limits on a session, sent as settings when it connects (so they hold for
 * every statement, however it is issued, and end with the session). Unset or 0: no limit.
 * A setting in the connection string (?statement_timeout=…) takes precedence.
 */
export interface SessionLimits {
  /** statement_timeout: a statement running longer is cancelled (SQLSTATE 57014). */
  statementTimeoutMs?: number
  /** lock_timeout: a wait for a lock longer than this fails (55P03). */
  lockTimeoutMs?: number
  /** idle_in_transaction_session_timeout: a session idle inside a transaction longer is ended (25P03). */
  idleInTransactionTimeoutMs?: number
}

export const DEFAULT_STATEMENT_TIMEOUT_MS = 30_000
export const DEFAULT_LOCK_TIMEOUT_MS = 5_000
export const DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000

/**
 * Limits for operations (status, dlq, jobs, locks, enqueue…): nothing they do should run
 * unbounded on a loaded production queue or wait forever behind another session's lock. The
 * lock wait is never longer than the statement limit; 0 turns every limit off.
 */
export function opsSessionLimits(statementTimeoutMs = DEFAULT_STATEMENT_TIMEOUT_MS): SessionLimits {
  if (statementTimeoutMs <= 0) return {}
  return {
    statementTimeoutMs,
    lockTimeoutMs: Math.min(DEFAULT_LOCK_TIMEOUT_MS, statementTimeoutMs),
    idleInTransactionTimeoutMs: DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS,
  }
}

/** Worker sessions: jobs may run statements for as long as they need, but never sit idle in a transaction. */
export const WORKER_SESSION_LIMITS: SessionLimits = {
  idleInTransactionTimeoutMs: DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS,
}

/** Creates a pg pool for a target; idle-client errors are reported, never thrown at the process. */
export function createPool(
  target: ConnectionTarget,
  options: PoolOptions = {},
  onError?: (error: Error) => void,
): pg.Pool {
  const config: pg.PoolConfig = {
    application_name: options.applicationName ?? 'backfill',
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 10_000,
  }
  const limits = options.limits ?? {}
  if (limits.statementTimeoutMs) config.statement_timeout = Math.ceil(limits.statementTimeoutMs)
  if (limits.lockTimeoutMs) config.lock_timeout = Math.ceil(limits.lockTimeoutMs)
  if (limits.idleInTransactionTimeoutMs)
    config.idle_in_transaction_session_timeout = Math.ceil(limits.idleInTransactionTimeoutMs)
  if (target.connectionString !== undefined) config.connectionString = target.connectionString
  const pool = new pg.Pool(config)
  // Without these listeners an idle or checked-out client's error (server restart,
  // terminated backend) would crash the process instead of failing one query.
  pool.on('error', (error) => onError?.(error))
  pool.on('connect', (client) => {
    client.on('error', (error) => onError?.(error))
  })
  return pool
}

type Executor = pg.Pool | pg.PoolClient

export interface DatabaseOptions {
  target: ConnectionTarget
  schema: SchemaName
  /** Use named prepared statements (off for PgBouncer in transaction mode). */
  preparedStatements?: boolean
  /** The session limits the pool was opened with (connect() applies them; errors quote them). */
  limits?: SessionLimits
  /** How the caller names its settings in error messages (a CLI passes its flags). */
  labels?: SettingLabels
}

export interface SettingLabels {
  /** Where the connection is configured, e.g. "--database-url / DATABASE_URL". */
  connection?: string
  /** What changes the statement timeout, e.g. "--statement-timeout". */
  statementTimeout?: string
  /** Where the schema name is set, e.g. "--schema / GRAPHILE_WORKER_SCHEMA". */
  schema?: string
}

/**
 * The library's handle on one graphile-worker schema: typed statements, transactions,
 * and PostgreSQL errors translated into typed errors.
 */
export class Database {
  readonly schema: SchemaName
  readonly quotedSchema: string
  readonly target: ConnectionTarget
  readonly preparedStatements: boolean
  readonly limits: SessionLimits
  readonly labels: SettingLabels
  private readonly executor: Executor
  private readonly rootPool: pg.Pool
  private readonly ownsPool: boolean
  private readonly textCache: Map<string, string>

  private constructor(
    executor: Executor,
    rootPool: pg.Pool,
    options: DatabaseOptions,
    ownsPool: boolean,
    textCache = new Map<string, string>(),
  ) {
    this.executor = executor
    this.rootPool = rootPool
    this.schema = options.schema
    this.quotedSchema = quoteIdent(options.schema)
    this.target = options.target
    this.preparedStatements = options.preparedStatements ?? true
    this.limits = options.limits ?? {}
    this.labels = options.labels ?? {}
    this.ownsPool = ownsPool
    this.textCache = textCache
  }

  /** Opens a pool of its own; end() closes it. */
  static connect(options: DatabaseOptions & PoolOptions, onPoolError?: (error: Error) => void): Database {
    const pool = createPool(options.target, options, onPoolError)
    return new Database(pool, pool, options, true)
  }

  /** Uses the caller's pool; end() leaves it open. */
  static fromPool(pool: pg.Pool, options: DatabaseOptions): Database {
    return new Database(pool, pool, options, false)
  }

  /** The pool behind this handle (also for a handle bound to one client). */
  get pool(): pg.Pool {
    return this.rootPool
  }

  /** True when this handle is bound to one connection (inside withClient/transaction). */
  get isClientBound(): boolean {
    return this.executor !== this.rootPool
  }

  /** The same connection and pool, addressing another schema. */
  withSchema(schema: SchemaName): Database {
    return new Database(this.executor, this.rootPool, {...this.options(), schema}, false)
  }

  /** What errors of this handle are explained with (target, schema, limits, the caller's labels). */
  errorContext(): PgErrorContext {
    return {target: this.target, schema: this.quotedSchema, limits: this.limits, labels: this.labels}
  }

  private options(): DatabaseOptions {
    return {
      target: this.target,
      schema: this.schema,
      preparedStatements: this.preparedStatements,
      limits: this.limits,
      labels: this.labels,
    }
  }

  sqlFor(statement: Statement<ParamSpec, ColumnSpec>): string {
    let text = this.textCache.get(statement.id)
    if (text === undefined) {
      text = statement.sql(this.quotedSchema)
      this.textCache.set(statement.id, text)
    }
    return text
  }

  async rows<P extends ParamSpec, C extends ColumnSpec>(
    statement: Statement<P, C>,
    params: ParamsOf<P>,
  ): Promise<RowOf<C>[]> {
    const result = await this.run(statement, params)
    return result.rows as RowOf<C>[]
  }

  async one<P extends ParamSpec, C extends ColumnSpec>(
    statement: Statement<P, C>,
    params: ParamsOf<P>,
  ): Promise<RowOf<C>> {
    const rows = await this.rows(statement, params)
    if (rows.length !== 1)
      throw new Error(`statement ${statement.id} returned ${rows.length} rows, expected exactly one`)
    return rows[0] as RowOf<C>
  }

  async maybeOne<P extends ParamSpec, C extends ColumnSpec>(
    statement: Statement<P, C>,
    params: ParamsOf<P>,
  ): Promise<RowOf<C> | undefined> {
    const rows = await this.rows(statement, params)
    return rows[0]
  }

  /** Runs a statement and returns the affected row count. */
  async exec<P extends ParamSpec, C extends ColumnSpec>(
    statement: Statement<P, C>,
    params: ParamsOf<P>,
  ): Promise<number> {
    const result = await this.run(statement, params)
    return result.rowCount ?? 0
  }

  /** Raw SQL for the schema installer only (DDL text built from validated identifiers). */
  async execScript(text: string): Promise<void> {
    try {
      await this.executor.query(text)
    } catch (error) {
      throw mapPgError(error, this.errorContext())
    }
  }

  /** Runs fn in one transaction on one connection; rolls back on any error. */
  async transaction<T>(fn: (tx: Database) => Promise<T>): Promise<T> {
    return this.withClient(async (tx) => {
      await tx.execScript('begin')
      try {
        const result = await fn(tx)
        await tx.execScript('commit')
        return result
      } catch (error) {
        await tx.executor.query('rollback').catch(() => undefined)
        throw error
      }
    })
  }

  /** Borrows one connection for fn (session-level state such as advisory locks). */
  async withClient<T>(fn: (db: Database) => Promise<T>): Promise<T> {
    if (!(this.executor instanceof pg.Pool)) return fn(this)
    let client: pg.PoolClient
    try {
      client = await this.executor.connect()
    } catch (error) {
      throw mapPgError(error, this.errorContext())
    }
    let broken: Error | undefined
    try {
      const bound = new Database(client, this.rootPool, this.options(), false, this.textCache)
      return await fn(bound)
    } catch (error) {
      // A connection-level failure must not go back into the pool.
      if (isConnectionFailure(error)) broken = error as Error
      throw error
    } finally {
      client.release(broken)
    }
  }

  /**
   * Streams a statement's rows through a server-side cursor, fetchSize rows at a time, so a
   * large result never sits in memory at once. Only inside transaction(); the next chunk is
   * fetched while onChunk processes the current one.
   */
  async cursor<P extends ParamSpec, C extends ColumnSpec>(
    statement: Statement<P, C>,
    params: ParamsOf<P>,
    fetchSize: number,
    onChunk: (rows: RowOf<C>[]) => void | Promise<void>,
  ): Promise<void> {
    if (!this.isClientBound) throw new Error('Database.cursor() needs a transaction (use db.transaction)')
    const name = `backfill_cursor_${++cursorCounter}`
    const size = Math.max(1, Math.floor(fetchSize))
    const query = async (config: pg.QueryConfig): Promise<pg.QueryResult> => {
      try {
        return await this.executor.query(config)
      } catch (error) {
        throw mapPgError(error, this.errorContext())
      }
    }
    const values = (params as readonly unknown[]).map((value) => (value === undefined ? null : value))
    await query({text: `declare ${name} no scroll cursor for ${this.sqlFor(statement)}`, values})
    const fetch = (): Promise<pg.QueryResult> => query({text: `fetch ${size} from ${name}`})
    let next: Promise<pg.QueryResult> | undefined = fetch()
    while (next) {
      const chunk: pg.QueryResult = await next
      next = chunk.rows.length === size ? fetch() : undefined
      // A rejected prefetch is awaited by the next turn; a throwing onChunk must not leave it unhandled.
      next?.catch(() => undefined)
      if (chunk.rows.length > 0) await onChunk(chunk.rows as RowOf<C>[])
    }
    await query({text: `close ${name}`})
  }

  async end(): Promise<void> {
    if (this.ownsPool && this.executor instanceof pg.Pool && !this.executor.ending) await this.executor.end()
  }

  private async run(statement: Statement<ParamSpec, ColumnSpec>, params: readonly unknown[]): Promise<pg.QueryResult> {
    const text = this.sqlFor(statement)
    const values = params.map((value) => (value === undefined ? null : value))
    const config: pg.QueryConfig =
      this.preparedStatements && statement.prepare
        ? {name: preparedName(statement.id, this.schema), text, values}
        : {text, values}
    try {
      return await this.executor.query(config)
    } catch (error) {
      throw mapPgError(error, this.errorContext())
    }
  }
}

let cursorCounter = 0

/** PostgreSQL keeps 63 bytes of a prepared statement's name (NAMEDATALEN - 1). */
const MAX_STATEMENT_NAME_BYTES = 63
const names = new Map<string, string>()

/**
 * The prepared statement name for a statement in a schema: `<id>/<schema>` when that fits
 * in 63 bytes. A longer one would make node-postgres warn on stderr at every use, and the
 * server truncates it, so two long schema names sharing a prefix would clash on one
 * connection (42P05): those get the id and a hash of id and schema instead.
 */
export function preparedName(id: string, schema: string): string {
  const plain = `${id}/${schema}`
  if (Buffer.byteLength(plain) <= MAX_STATEMENT_NAME_BYTES) return plain
  let name = names.get(plain)
  if (name === undefined) {
    const hash = createHash('sha256').update(plain).digest('base64url').slice(0, 22)
    name = `${id.slice(0, MAX_STATEMENT_NAME_BYTES - hash.length - 1)}~${hash}`
    names.set(plain, name)
  }
  return name
}

function isConnectionFailure(error: unknown): boolean {
  const code = (error as {code?: string})?.code
  return code === 'E_CONNECTION' || code === 'E_SERVER_UNAVAILABLE'
}
