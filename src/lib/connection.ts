import {parse as parseConnectionString} from 'pg-connection-string'

import {
  conninfoToUrl,
  isKeyValueConninfo,
  parseKeyValueConninfo,
  redactConninfo,
  secretsInConninfo,
  SECRET_KEYWORDS,
} from './conninfo.js'
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
  /** '' when no user name is configured anywhere (node-postgres then sends none). */
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
  if (isKeyValueConninfo(url)) return targetFromConninfo(url, source)
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)
  if (!scheme) {
    // Not a URL and no "=": possibly a URL without its scheme, so not one character is shown.
    throw new ConfigError('the database URL is neither a postgres:// URL nor a key=value connection string', {
      code: 'E_BAD_DATABASE_URL',
      suggestions: [
        'use the form postgres://user:password@host:5432/database',
        "or libpq's form: host=... port=5432 user=... password=... dbname=...",
      ],
    })
  }
  if (!/^(postgres|postgresql|socket):/i.test(url)) {
    throw new ConfigError(`database URL ${redactUrl(url)} is not a postgres:// URL`, {
      code: 'E_BAD_DATABASE_URL',
      suggestions: ['use the form postgres://user:password@host:5432/database'],
    })
  }
  const rawPassword = passwordInUrl(url)
  const secrets = [rawPassword, safeDecode(rawPassword), ...passwordParams(url)].filter((s): s is string => Boolean(s))
  // An "@" after the host part means a password with an unencoded "/", "?" or "#" before it:
  // URL parsers (and libpq) then split the password into host and path, so we refuse.
  // (An "@" inside a query parameter, as in application_name=me@host, is fine.)
  const authorityEnd = url.slice(scheme[0].length).search(/[/?#]/) + scheme[0].length
  const lastAt = userInfo(url)?.end ?? -1
  if (authorityEnd >= scheme[0].length && lastAt > authorityEnd) {
    throw new ConfigError(`database URL ${redactUrl(url)} cannot be parsed: "@" after the host`, {
      code: 'E_BAD_DATABASE_URL',
      suggestions: ['percent-encode special characters in the password: @ as %40, / as %2F, ? as %3F, # as %23'],
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
  if (parsed.password) secrets.push(parsed.password)
  return describeTarget(url, parsed, secrets, source, redactUrl(url))
}

/** libpq's key=value form, handed to pg as the equivalent URL. */
function targetFromConninfo(text: string, source: ConnectionTarget['source']): ConnectionTarget {
  const secrets = secretsInConninfo(text)
  const url = conninfoToUrl(parseKeyValueConninfo(text))
  const parsed = parseConnectionString(url)
  for (const key of SECRET_KEYWORDS) {
    const value = (parsed as Record<string, unknown>)[key]
    if (typeof value === 'string' && value) secrets.push(value)
  }
  return describeTarget(url, parsed, secrets, source, redactUrl(url))
}

function describeTarget(
  url: string,
  parsed: ReturnType<typeof parseConnectionString>,
  secrets: string[],
  source: ConnectionTarget['source'],
  display: string,
): ConnectionTarget {
  const host = parsed.host || 'localhost'
  const port = Number(parsed.port || 5432)
  const user = parsed.user || process.env.PGUSER || osUser()
  const database = parsed.database || user
  return {connectionString: url, display, host, port, database, user, secrets: [...new Set(secrets)], source}
}

/** Values of password= (and other secret) query parameters, raw and decoded. */
function passwordParams(url: string): string[] {
  const out: string[] = []
  for (const match of url.matchAll(/[?&]([a-z_]+)=([^&#]*)/gi)) {
    if (SECRET_KEYWORDS.has(match[1]!.toLowerCase())) out.push(match[2]!, safeDecode(match[2]!.replaceAll('+', ' '))!)
  }
  return out
}

function targetFromPgEnv(env: NodeJS.ProcessEnv): ConnectionTarget {
  const host = env.PGHOST || env.PGHOSTADDR || 'localhost'
  const port = Number(env.PGPORT || 5432)
  const user = env.PGUSER || osUser()
  const database = env.PGDATABASE || user
  const hostPart = host.startsWith('/') ? `?host=${host}` : ''
  const display = hostPart
    ? `postgres://${user ? `${user}@` : ''}/${database}${hostPart} (from PG* variables)`
    : `postgres://${user ? `${user}@` : ''}${host}:${port}/${database} (from PG* variables)`
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

/** The user node-postgres sends when none is configured ('' when it sends none). */
function osUser(): string {
  return (process.platform === 'win32' ? process.env.USERNAME : process.env.USER) || ''
}

/**
 * The user-info of a URL, found without trusting the URL to be well formed: everything
 * between "://" and the LAST "@" (a password may contain an unencoded "@", "/" or "#").
 */
function userInfo(url: string): {start: number; end: number} | undefined {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)
  if (!scheme) return undefined
  // The last "@" that is not inside a query parameter (application_name=me@host).
  let at = url.lastIndexOf('@')
  while (at >= scheme[0].length && /\?[^#]*=/.test(url.slice(scheme[0].length, at))) {
    at = url.lastIndexOf('@', at - 1)
  }
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

/**
 * Replaces the passwords of a connection string of any shape with ***: the user-info of a URL
 * (with or without its scheme), password= query parameters, and password=... pairs of libpq's
 * key=value form.
 */
export function redactUrl(url: string): string {
  if (isKeyValueConninfo(url) && !/[?&]password=/i.test(url)) return redactConninfo(url)
  const info = userInfo(url)
  let out = url
  if (info) {
    const text = url.slice(info.start, info.end)
    const colon = text.indexOf(':')
    if (colon >= 0) out = `${url.slice(0, info.start)}${text.slice(0, colon)}:***${url.slice(info.end)}`
  } else if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url) && url.includes('@')) {
    // Scheme-less "user:password@host/db": everything up to the last "@" may be secret.
    out = `***${url.slice(url.lastIndexOf('@'))}`
  }
  return out.replace(/([?&](?:password|sslpassword)=)[^&]*/gi, '$1***')
}

/** Removes every known secret from text about to be printed or logged. */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text
  for (const secret of secrets) {
    if (secret.length >= 3) out = out.split(secret).join('***')
  }
  return out
}
