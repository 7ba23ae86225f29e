import type {ConnectionTarget} from './connection.js'
import {scrubSecrets} from './connection.js'
import type {SessionLimits, SettingLabels} from './db.js'
import {formatDuration} from './duration.js'
import {
  BackfillError,
  ConnectionError,
  InternalError,
  NotMigratedError,
  PermissionError,
  PreconditionError,
  TimeoutError,
} from './errors.js'

/** The fields of a node-postgres error (DatabaseError) or a Node system error we look at. */
interface PgLikeError {
  code?: string
  message?: string
  errno?: number
  syscall?: string
  address?: string
  detail?: string
  hint?: string
  routine?: string
  /** FATAL: the server ends the session (at startup: a setting it refused). */
  severity?: string
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'ECONNRESET',
  'EAI_AGAIN',
  'ENOENT',
  'EPIPE',
])

/** Node's TLS errors for certificates that cannot be trusted. */
const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
])

/**
 * Whether a statement may have committed although the client got an error: true unless
 * PostgreSQL itself answered with a SQLSTATE outside classes 08 (connection) and 57P
 * (server shutting down), which means the statement rolled back. Node's own codes (EPIPE,
 * ECONNRESET) and code-less errors ("Connection terminated") are lost connections.
 */
export function isAmbiguousOutcome(raw: unknown): boolean {
  const code = (raw as PgLikeError | null | undefined)?.code
  if (typeof code !== 'string' || NETWORK_CODES.has(code) || !/^[0-9A-Z]{5}$/.test(code)) return true
  return code.startsWith('08') || code.startsWith('57P')
}

export interface PgErrorContext {
  target: ConnectionTarget
  /** Quoted or plain schema name, for "not migrated" messages. */
  schema?: string
  /** The session's limits, to say which one was hit. */
  limits?: SessionLimits
  /** How the caller names its settings (a CLI passes its flags); neutral wording otherwise. */
  labels?: SettingLabels
}

/**
 * Turns node-postgres / socket errors into typed errors with a next step.
 * Unknown database errors stay InternalError but keep PostgreSQL's own message.
 */
export function mapPgError(raw: unknown, ctx: PgErrorContext): BackfillError {
  if (raw instanceof BackfillError) return raw
  const error = (raw ?? {}) as PgLikeError
  const code = error.code ?? ''
  const message = scrubSecrets(String(error.message ?? raw), ctx.target.secrets)
  const {target} = ctx
  const where = target.display
  const pgIsReady = `pg_isready -h ${target.host} -p ${target.port}`
  const connectionSetting = ctx.labels?.connection ?? 'the connection settings'
  const timeoutSetting = ctx.labels?.statementTimeout ?? 'the session limits (statementTimeoutMs)'

  if (NETWORK_CODES.has(code) || /timeout expired|Connection terminated/i.test(message)) {
    return new ConnectionError(`cannot connect to ${where}: ${describeNetwork(code, message)}`, {
      code: 'E_CONNECTION',
      cause: raw,
      suggestions: [
        `is PostgreSQL running and reachable? try: ${pgIsReady}`,
        `check ${connectionSetting} (host, port)`,
      ],
    })
  }
  // TLS problems come from Node (no SQLSTATE): sslmode=require against a server without SSL,
  // an untrusted or mismatched certificate.
  if (!/^[0-9A-Z]{5}$/.test(code) && (TLS_CODES.has(code) || /SSL|TLS|certificate/.test(message))) {
    return new ConnectionError(`SSL connection to ${where} failed: ${message}`, {
      code: 'E_SSL',
      cause: raw,
      suggestions: /does not support SSL/.test(message)
        ? ['the server does not offer SSL: enable ssl on it, or connect without sslmode=require (sslmode=disable)']
        : ["check the server's certificate, or give its CA with sslrootcert=FILE"],
    })
  }
  switch (code) {
    case '28P01':
    case '28000':
      if (!target.user) {
        return new ConnectionError(`no user name was sent to ${where}: the connection names none and USER is unset`, {
          code: 'E_AUTH',
          cause: raw,
          suggestions: ['name the user: postgres://USER@host/db, user=USER, or PGUSER=USER'],
        })
      }
      return new ConnectionError(`authentication failed for user "${target.user}" at ${where}`, {
        code: 'E_AUTH',
        cause: raw,
        suggestions: [`check the user name and password in ${connectionSetting} (or PGUSER/PGPASSWORD)`],
      })
    case '3D000':
      return new ConnectionError(`database "${target.database}" does not exist at ${where}`, {
        code: 'E_NO_SUCH_DATABASE',
        cause: raw,
        suggestions: [
          `create it: createdb -h ${target.host} -p ${target.port} ${target.database}`,
          `or point ${connectionSetting} at an existing database`,
        ],
      })
    case '42501':
      return new PermissionError(`permission denied for role "${target.user}": ${message}`, {
        cause: raw,
        suggestions: permissionHints(message, target.database, target.user, ctx.schema),
      })
    case '42P01':
    case '3F000':
      return new NotMigratedError(
        `the job queue schema${ctx.schema ? ` ${ctx.schema}` : ''} is not installed (${message})`,
        {cause: raw, suggestions: [`run: backfill migrate${ctx.schema ? ` --schema ${unquote(ctx.schema)}` : ''}`]},
      )
    case '53300':
    case '53400':
      return new ConnectionError(`the server at ${where} refused the connection: ${message}`, {
        code: 'E_TOO_MANY_CONNECTIONS',
        cause: raw,
        suggestions: ['lower the pool size (a worker needs its concurrency plus a few), or raise max_connections'],
      })
    case '57P01':
    case '57P02':
    case '57P03':
      return new ConnectionError(`the server at ${where} is shutting down or starting: ${message}`, {
        code: 'E_SERVER_UNAVAILABLE',
        cause: raw,
        suggestions: [`retry when the server is up: ${pgIsReady}`],
      })
    case '57014':
      // Also pg_cancel_backend ("due to user request"): only the statement timeout is ours to explain.
      if (!/statement timeout/i.test(message)) break
      return new TimeoutError(
        `the query ran longer than the ${limit(ctx.limits?.statementTimeoutMs)}statement timeout and was cancelled; raise it with ${timeoutSetting} (0 for no limit)`,
        {
          cause: raw,
          details: {sqlstate: code, statementTimeoutMs: ctx.limits?.statementTimeoutMs ?? null},
          suggestions: [
            'a lock held by another session, or a very large queue, can make it slow: see pg_stat_activity',
          ],
        },
      )
    case '55P03':
      if (!/lock timeout/i.test(message)) break
      return new TimeoutError(
        `gave up waiting ${limit(ctx.limits?.lockTimeoutMs)}for a lock another session holds (lock timeout); retry later, or lift the limits with ${timeoutSetting} 0`,
        {
          cause: raw,
          details: {sqlstate: code, lockTimeoutMs: ctx.limits?.lockTimeoutMs ?? null},
          suggestions: [
            'find the holder: select pid, state, query from pg_stat_activity where cardinality(pg_blocking_pids(pid)) > 0 or pid in (select unnest(pg_blocking_pids(pid)) from pg_stat_activity)',
          ],
        },
      )
    case '25P03':
      return new TimeoutError(
        `the server ended the session after it sat idle in a transaction for ${limit(ctx.limits?.idleInTransactionTimeoutMs) || 'too long '}(idle_in_transaction_session_timeout)`,
        {
          cause: raw,
          details: {sqlstate: code},
          suggestions: ['nothing of the open transaction was committed; rerun the command'],
        },
      )
    case '42P05':
    case '26000':
      // A named prepared statement another client's session prepared (or one this client
      // prepared on a server connection it no longer has): a transaction pooler in between.
      if (/prepared statement/i.test(message)) {
        return new ConnectionError(
          `named prepared statements do not work through ${where}: ${message}; the connection is pooled per transaction (PgBouncer pool_mode = transaction?)`,
          {
            code: 'E_PREPARED_STATEMENTS',
            cause: raw,
            suggestions: [
              'set BACKFILL_PREPARED_STATEMENTS=false for commands run through a transaction pool',
              'or connect directly / through a session pool (see docs/deploy/pgbouncer.md)',
            ],
          },
        )
      }
      break
    case '25006':
      return new PreconditionError(`the server at ${where} is read-only: ${message}`, {
        code: 'E_READ_ONLY',
        cause: raw,
        suggestions: ['connect to the primary, not a replica'],
      })
    default:
      break
  }
  if (error.severity === 'FATAL' && (code.startsWith('22') || code.startsWith('42'))) {
    // Refused at startup: a bad options=-c setting (or PGOPTIONS) is configuration, not a bug.
    return new ConnectionError(`the server at ${where} refused the connection's settings: ${message}`, {
      code: 'E_CONNECTION_SETTINGS',
      cause: raw,
      suggestions: ['check options= in the connection string (or PGOPTIONS), e.g. options=-c statement_timeout=30s'],
    })
  }
  // PgBouncer refuses startup parameters it does not know, such as the session limits we send.
  const startup = /unsupported startup parameter: (\S+)/i.exec(message)
  if (startup) {
    return new ConnectionError(`${where} refused the connection: ${message}`, {
      code: 'E_POOLER_STARTUP_PARAMETER',
      cause: raw,
      suggestions: [
        `a connection pooler is in between (PgBouncer?): add ${startup[1]} to its ignore_startup_parameters (see docs/deploy/pgbouncer.md)`,
        'and set the limits on the role instead: ALTER ROLE … SET statement_timeout = …',
      ],
    })
  }
  if (code.startsWith('08')) {
    return new ConnectionError(`connection to ${where} failed: ${message}`, {
      cause: raw,
      suggestions: [`try: ${pgIsReady}`],
    })
  }
  const detail = [error.detail, error.hint].filter(Boolean).join('; ')
  return new InternalError(
    `database error${code ? ` ${code}` : ''}: ${message}${detail ? ` (${scrubSecrets(detail, target.secrets)})` : ''}`,
    {
      cause: raw,
      details: code ? {sqlstate: code} : undefined,
    },
  )
}

/** The grant that fixes what PostgreSQL said was denied (database, schema, table or function). */
function permissionHints(message: string, database: string, user: string, schema: string | undefined): string[] {
  const role = quoteForHint(user)
  const inSchema = schema ?? '<schema>'
  if (/for database|to create schema/i.test(message)) {
    return [
      `to install the schema the role needs: GRANT CREATE ON DATABASE ${quoteForHint(database)} TO ${role};`,
      'or run backfill migrate as the database owner (then workers need not migrate)',
    ]
  }
  // Table GRANTs are not the fix: graphile-worker's tables have row-level security with no
  // policy, so a granted non-owner reads zero rows (requireMigrated refuses that state).
  if (/for (schema|table|relation|sequence|view)/i.test(message)) {
    return [
      `run the command as the owner of ${inSchema}'s tables, or make this role a member of that owner: GRANT <owner> TO ${role};`,
      `graphile-worker's tables use row-level security: GRANTs on them alone show ${role} no rows (a superuser may instead ALTER ROLE ${role} BYPASSRLS)`,
    ]
  }
  if (/for function|for procedure/i.test(message))
    return [`GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ${inSchema} TO ${role};`]
  return [`ask the schema owner for the privilege PostgreSQL names above, or run the command as the owner`]
}

/** "30s " (with the trailing space) when the limit is known, else nothing. */
function limit(ms: number | undefined): string {
  if (!ms) return ''
  return `${ms < 60_000 && ms % 1000 === 0 ? `${ms / 1000}s` : formatDuration(ms)} `
}

function describeNetwork(code: string, message: string): string {
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused'
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host not found'
    case 'ETIMEDOUT':
      return 'connection timed out'
    case 'ENOENT':
      return 'no server socket at that path'
    default:
      return message
  }
}

function quoteForHint(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`
}

function unquote(name: string): string {
  return name.replace(/^"(.*)"$/, '$1')
}
