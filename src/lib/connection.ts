import {parse as parseConnectionString} from 'pg-connection-string'

import {ConfigError} from './errors.js'

/** Where we connect, with everything a message may show (never the password). */
export interface ConnectionTarget {
  /** The connection string pg uses; undefined means pg reads the libpq PG* variables. */
  readonly connectionString: string | undefined
  /** Redacted description for messages, e.g. postgres://app:***@db:5432/app. */
  readonly display: string
  readonly host: string
  readonly port: number
  readonly database: string
  readonly user: string
  /** Literal secrets to scrub from any text we print. */
  readonly secrets: readonly string[]
  readonly source: 'flag-or-env' | 'pg-env' | 'embedded' | 'pool'
}

const PG_ENV_VARS = ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGSERVICE'] as const

export interface ResolveConnectionInput {
  /** --database-url, or DATABASE_URL as oclif passes it through. */
  readonly databaseUrl?: string | undefined
  readonly env: NodeJS.ProcessEnv
  /** Connection string of the embedded server when --embedded was chosen. */
  readonly embeddedUrl?: string | undefined
}

/**
 * Precedence: --database-url / DATABASE_URL, then --embedded, then the libpq PG* variables.
 * With none of them we refuse rather than guess localhost.
 */
export function resolveConnection(input: ResolveConnectionInput): ConnectionTarget {
  const url = input.databaseUrl?.trim()
  if (url) return targetFromUrl(url, 'flag-or-env')
  if (input.embeddedUrl) return targetFromUrl(input.embeddedUrl, 'embedded')
  const pgVars = PG_ENV_VARS.filter((name) => input.env[name])
  if (pgVars.length > 0) return targetFromPgEnv(input.env)
  throw new ConfigError('no database configured', {
    code: 'E_NO_DATABASE',
    suggestions: [
      'pass --database-url postgres://user@host:5432/db (or set DATABASE_URL)',
      'or set the libpq variables PGHOST, PGDATABASE, PGUSER (and PGPASSWORD)',
      'or use --embedded (BACKFILL_EMBEDDED=1) to run against the embedded development database',
    ],
  })
}

export function targetFromUrl(url: string, source: ConnectionTarget['source']): ConnectionTarget {
  const rawPassword = passwordInUrl(url)
  if (!/^(postgres|postgresql|socket):/i.test(url)) {
    throw new ConfigError(`database URL ${redactUrl(url)} is not a postgres:// URL`, {
      code: 'E_BAD_DATABASE_URL',
      suggestions: ['use the form postgres://user:password@host:5432/database'],
    })
  }
  let parsed: ReturnType<typeof parseConnectionString>
  try {
    parsed = parseConnectionString(url)
  } catch (error) {
    throw new ConfigError(`database URL ${redactUrl(url)} cannot be parsed`, {
      code: 'E_BAD_DATABASE_URL',
      cause: error,
      suggestions: ['use the form postgres://user:password@host:5432/database; percent-encode special characters'],
    })
  }
  const host = parsed.host || 'localhost'
  const port = Number(parsed.port || 5432)
  const user = parsed.user || process.env.PGUSER || osUser()
  const database = parsed.database || user
  const secrets = [parsed.password, rawPassword, safeDecode(rawPassword)].filter((s): s is string => Boolean(s))
  return {connectionString: url, display: redactUrl(url), host, port, database, user, secrets, source}
}

function targetFromPgEnv(env: NodeJS.ProcessEnv): ConnectionTarget {
  const host = env.PGHOST || env.PGHOSTADDR || 'localhost'
  const port = Number(env.PGPORT || 5432)
  const user = env.PGUSER || osUser()
  const database = env.PGDATABASE || user
  const hostPart = host.startsWith('/') ? `?host=${host}` : ''
  const display = hostPart
    ? `postgres://${user}@/${database}${hostPart} (from PG* variables)`
    : `postgres://${user}@${host}:${port}/${database} (from PG* variables)`
  return {
    connectionString: undefined,
    display,
    host,
    port,
    database,
    user,
    secrets: env.PGPASSWORD ? [env.PGPASSWORD] : [],
    source: 'pg-env',
  }
}

function osUser(): string {
  return process.env.USER || process.env.LOGNAME || 'postgres'
}

/**
 * The user-info of a URL, found without trusting the URL to be well formed: everything
 * between "://" and the LAST "@" (a password may contain an unencoded "@", "/" or "#").
 */
function userInfo(url: string): {start: number; end: number} | undefined {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)
  if (!scheme) return undefined
  const at = url.lastIndexOf('@')
  if (at < scheme[0].length) return undefined
  return {start: scheme[0].length, end: at}
}

function passwordInUrl(url: string): string | undefined {
  const info = userInfo(url)
  if (!info) return undefined
  const text = url.slice(info.start, info.end)
  const colon = text.indexOf(':')
  return colon < 0 ? undefined : text.slice(colon + 1)
}

function safeDecode(text: string | undefined): string | undefined {
  if (text === undefined) return undefined
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/** Replaces the password of a URL (and any password= query parameter) with ***. */
export function redactUrl(url: string): string {
  const info = userInfo(url)
  let out = url
  if (info) {
    const text = url.slice(info.start, info.end)
    const colon = text.indexOf(':')
    if (colon >= 0) out = `${url.slice(0, info.start)}${text.slice(0, colon)}:***${url.slice(info.end)}`
  }
  return out.replace(/([?&]password=)[^&]*/gi, '$1***')
}

/** Removes every known secret from text about to be printed or logged. */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text
  for (const secret of secrets) {
    if (secret.length >= 3) out = out.split(secret).join('***')
  }
  return out
}
