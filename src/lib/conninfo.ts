import {ConfigError} from './errors.js'

/**
 * libpq's keyword/value connection strings ("host=db user=app password='a b' dbname=x").
 * node-postgres only reads URLs, so we parse this form with libpq's grammar (conninfo_parse in
 * fe-connect.c) and hand pg the equivalent URL. Errors never quote the input: any part of it may
 * be a password.
 */

/** The keywords libpq accepts (PQconninfoOptions, PostgreSQL 17/18); anything else is an error there too. */
const LIBPQ_KEYWORDS = new Set([
  'service',
  'user',
  'password',
  'passfile',
  'require_auth',
  'channel_binding',
  'connect_timeout',
  'dbname',
  'host',
  'hostaddr',
  'port',
  'client_encoding',
  'options',
  'application_name',
  'fallback_application_name',
  'keepalives',
  'keepalives_idle',
  'keepalives_interval',
  'keepalives_count',
  'tcp_user_timeout',
  'sslmode',
  'sslnegotiation',
  'sslcompression',
  'sslcert',
  'sslkey',
  'sslcertmode',
  'sslpassword',
  'sslrootcert',
  'sslcrl',
  'sslcrldir',
  'sslsni',
  'sslkeylogfile',
  'requirepeer',
  'ssl_min_protocol_version',
  'ssl_max_protocol_version',
  'min_protocol_version',
  'max_protocol_version',
  'gssencmode',
  'krbsrvname',
  'gsslib',
  'gssdelegation',
  'replication',
  'target_session_attrs',
  'load_balance_hosts',
  'scram_client_key',
  'scram_server_key',
  'oauth_issuer',
  'oauth_client_id',
  'oauth_client_secret',
  'oauth_scope',
])

/** Keywords whose values are secrets (never shown, always scrubbed). */
export const SECRET_KEYWORDS = new Set([
  'password',
  'sslpassword',
  'scram_client_key',
  'scram_server_key',
  'oauth_client_secret',
])

const SUGGEST_FORM = "use host=... port=... user=... password='...' dbname=..., quoting values that contain spaces"

/** libpq's rule: a string that is not a postgres URI but contains "=" is keyword/value. */
export function isKeyValueConninfo(text: string): boolean {
  return !/^[a-z][a-z0-9+.-]*:\/\//i.test(text) && text.includes('=')
}

/** libpq's isspace: space, \t, \n, \v, \f, \r. */
function isSpace(ch: string): boolean {
  return ch === ' ' || ch === '\t' || ch === '\n' || ch === '\v' || ch === '\f' || ch === '\r'
}

/**
 * Parses keyword/value pairs as libpq does: whitespace around "=" is allowed; a value is either
 * unquoted (ends at whitespace) or in single quotes; in both, a backslash takes the next
 * character literally. A later keyword wins over an earlier one, as in libpq.
 */
export function parseKeyValueConninfo(text: string): Map<string, string> {
  const out = new Map<string, string>()
  let i = 0
  let item = 0
  const fail = (what: string): never => {
    throw new ConfigError(`the connection string cannot be parsed: ${what}`, {
      code: 'E_BAD_DATABASE_URL',
      suggestions: [SUGGEST_FORM],
    })
  }
  while (i < text.length) {
    while (i < text.length && isSpace(text[i]!)) i++
    if (i >= text.length) break
    item++
    let keyword = ''
    while (i < text.length && text[i] !== '=' && !isSpace(text[i]!)) keyword += text[i++]
    while (i < text.length && isSpace(text[i]!)) i++
    if (text[i] !== '=') fail(`missing "=" after item ${item}`)
    i++
    while (i < text.length && isSpace(text[i]!)) i++
    let value = ''
    if (text[i] === "'") {
      i++
      for (;;) {
        if (i >= text.length) fail(`unterminated quoted value in item ${item}`)
        const ch = text[i]!
        if (ch === '\\') {
          i++
          if (i < text.length) value += text[i++]
        } else if (ch === "'") {
          i++
          break
        } else {
          value += ch
          i++
        }
      }
    } else {
      while (i < text.length && !isSpace(text[i]!)) {
        if (text[i] === '\\') {
          i++
          if (i < text.length) value += text[i++]
        } else {
          value += text[i++]
        }
      }
    }
    // Only a known keyword is named: an unknown one may be half of an unquoted password.
    if (!LIBPQ_KEYWORDS.has(keyword)) fail(`item ${item} is not a libpq keyword`)
    out.set(keyword, value)
  }
  return out
}

/**
 * The postgres:// URL that makes node-postgres connect where libpq would for these pairs.
 * Keywords pg ignores stay in the query, as they would in a URL.
 */
export function conninfoToUrl(pairs: Map<string, string>): string {
  const refuse = (message: string, suggestion: string): never => {
    throw new ConfigError(`the connection string ${message}`, {code: 'E_BAD_DATABASE_URL', suggestions: [suggestion]})
  }
  if (pairs.has('service')) {
    refuse(
      'names a service (pg_service.conf), which node-postgres cannot read',
      'spell out host, port, user and dbname instead',
    )
  }
  // libpq connects to hostaddr when given (host then only names the server for TLS/Kerberos).
  const host = pairs.get('hostaddr') || pairs.get('host') || ''
  const port = pairs.get('port') ?? ''
  if (host.includes(',') || port.includes(',')) {
    refuse('lists several hosts or ports, which node-postgres cannot try in turn', 'name one host and one port')
  }
  if (port && !/^\d{1,5}$/.test(port)) refuse('has a port that is not a number', 'use port=5432 (digits only)')
  const query = new URLSearchParams()
  let authority = ''
  const user = pairs.get('user')
  const password = pairs.get('password')
  if (user || password) {
    authority = `${encodeURIComponent(user ?? '')}${password ? `:${encodeURIComponent(password)}` : ''}@`
  }
  if (/^[A-Za-z0-9.-]+$/.test(host)) {
    authority += `${host}${port ? `:${port}` : ''}`
  } else if (/^[0-9A-Fa-f:.]+$/.test(host) && host.includes(':')) {
    authority += `[${host}]${port ? `:${port}` : ''}`
  } else {
    // A socket directory (or anything a URL authority cannot hold) goes in the query, as pg reads it.
    if (host) query.set('host', host)
    if (port) query.set('port', port)
  }
  const dbname = pairs.get('dbname') ?? ''
  // pg decodes the path with decodeURI, which cannot give back "?" or "#".
  if (/[?#]/.test(dbname)) {
    refuse('names a database containing "?" or "#", which node-postgres cannot address', 'rename the database')
  }
  for (const [keyword, value] of pairs) {
    if (!['user', 'password', 'host', 'hostaddr', 'port', 'dbname'].includes(keyword)) query.set(keyword, value)
  }
  const search = query.toString()
  return `postgres://${authority}/${encodeURI(dbname)}${search ? `?${search}` : ''}`
}

/** The secrets named in a keyword/value string, found leniently (also in strings that do not parse). */
export function secretsInConninfo(text: string): string[] {
  const out: string[] = []
  for (const match of text.matchAll(/(?:^|\s)([a-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'?|(?:[^\s\\]|\\.)*)/gi)) {
    if (!SECRET_KEYWORDS.has(match[1]!.toLowerCase())) continue
    const raw = match[2]!
    out.push(raw)
    const unquoted = raw.startsWith("'") ? raw.slice(1, raw.endsWith("'") && raw.length > 1 ? -1 : undefined) : raw
    out.push(unquoted, unquoted.replace(/\\(.)/g, '$1'))
  }
  return out.filter((s) => s.length > 0)
}

/** A keyword/value string with every secret value replaced by ***. */
export function redactConninfo(text: string): string {
  return text.replace(
    /(^|\s)([a-z_]+)(\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:[^\s\\]|\\.)*)/gi,
    (whole, lead: string, keyword: string, eq: string) =>
      SECRET_KEYWORDS.has(keyword.toLowerCase()) ? `${lead}${keyword}${eq}***` : whole,
  )
}
