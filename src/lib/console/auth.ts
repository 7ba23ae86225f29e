import {createHash, createHmac, randomBytes, timingSafeEqual} from 'node:crypto'
import type {IncomingMessage} from 'node:http'

import {ConfigError} from '../errors.js'

/** Who is making a request, as the audit trail records it. */
export interface Identity {
  /** "admin", a basic-auth user name, or "local" (loopback without credentials). */
  name: string
  method: 'token' | 'basic' | 'session' | 'anonymous' | 'custom'
}

/**
 * Credentials the console accepts (from the environment for `backfill ui`): one shared token
 * (BACKFILL_UI_TOKEN: `Authorization: Bearer`, or a login form that sets a session cookie),
 * and/or basic-auth users (BACKFILL_UI_USERS="alice:secret,bob:other").
 */
export interface AuthConfig {
  token?: string
  users?: ReadonlyMap<string, string>
}

const RESERVED_NAMES = ['token', 'local']

export function authFromEnv(env: NodeJS.ProcessEnv = process.env): AuthConfig {
  const config: {token?: string; users?: Map<string, string>} = {}
  const token = env.BACKFILL_UI_TOKEN?.trim()
  if (token) {
    if (token.length < 16)
      throw new ConfigError('BACKFILL_UI_TOKEN is too short: use at least 16 characters', {
        code: 'E_WEAK_TOKEN',
        suggestions: ['generate one with: openssl rand -hex 24'],
      })
    config.token = token
  }
  const users = env.BACKFILL_UI_USERS?.trim()
  if (users) {
    const map = new Map<string, string>()
    for (const pair of users.split(',')) {
      const at = pair.indexOf(':')
      const name = pair.slice(0, at).trim()
      const password = pair.slice(at + 1)
      if (at <= 0 || password.length === 0)
        // The value is never echoed: it holds passwords.
        throw new ConfigError('BACKFILL_UI_USERS must be a comma-separated list of user:password pairs', {
          code: 'E_BAD_USERS',
          suggestions: ['e.g. BACKFILL_UI_USERS="alice:correct-horse,bob:battery-staple"'],
        })
      // The bearer token signs in as "token" and a credential-less local client as "local": a user
      // of the same name would be indistinguishable in the audit trail (and own their previews).
      if (RESERVED_NAMES.includes(name))
        throw new ConfigError(`BACKFILL_UI_USERS: the user name "${name}" is reserved`, {
          code: 'E_BAD_USERS',
          suggestions: [`name the user otherwise (${RESERVED_NAMES.map((n) => `"${n}"`).join(' and ')} are taken)`],
        })
      map.set(name, password)
    }
    config.users = map
  }
  return config
}

export function hasCredentials(config: AuthConfig): boolean {
  return Boolean(config.token) || (config.users?.size ?? 0) > 0
}

/** Equal strings, in time that does not depend on where they differ (or on their lengths). */
export function safeEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest()
  const db = createHash('sha256').update(b).digest()
  return timingSafeEqual(da, db)
}

/** Checks a token or a user's password; the identity, or undefined. */
export function checkToken(config: AuthConfig, token: string): Identity | undefined {
  return config.token && safeEqual(config.token, token) ? {name: 'token', method: 'token'} : undefined
}

export function checkUser(config: AuthConfig, user: string, password: string): Identity | undefined {
  const expected = config.users?.get(user)
  // Compare against something even for unknown users (no user-enumeration timing).
  const ok = safeEqual(expected ?? `\u0000${randomBytes(8).toString('hex')}`, password) && expected !== undefined
  return ok ? {name: user, method: 'basic'} : undefined
}

const SESSION_COOKIE = 'backfill_session'
const SESSION_TTL_MS = 12 * 3600_000

/**
 * Signed session cookies and CSRF tokens, keyed by a secret of this process (sessions end
 * when the server restarts, which is what a console for on-call wants).
 */
export class SessionKeys {
  private readonly secret: Buffer
  /** Signed-out cookie values until they would have expired (the cookie alone cannot be recalled). */
  private readonly revoked = new Map<string, number>()

  constructor(secret: Buffer = randomBytes(32)) {
    this.secret = secret
  }

  private sign(text: string): string {
    return createHmac('sha256', this.secret).update(text).digest('base64url')
  }

  /** Set-Cookie value for a logged-in identity. */
  sessionCookie(identity: Identity, secure: boolean, path: string): string {
    const payload = Buffer.from(
      JSON.stringify({n: identity.name, m: identity.method, e: Date.now() + SESSION_TTL_MS}),
    ).toString('base64url')
    const value = `${payload}.${this.sign(payload)}`
    return `${SESSION_COOKIE}=${value}; Path=${path}; HttpOnly; SameSite=Strict; Max-Age=${SESSION_TTL_MS / 1000}${secure ? '; Secure' : ''}`
  }

  static clearCookie(path: string): string {
    return `${SESSION_COOKIE}=; Path=${path}; HttpOnly; SameSite=Strict; Max-Age=0`
  }

  /** The identity of a valid, unexpired session cookie, and the cookie value (CSRF binding). */
  readSession(req: IncomingMessage): {identity: Identity; value: string; expires: number} | undefined {
    const value = readCookie(req, SESSION_COOKIE)
    if (!value || this.revoked.has(value)) return undefined
    const dot = value.indexOf('.')
    if (dot <= 0) return undefined
    const payload = value.slice(0, dot)
    if (!safeEqual(this.sign(payload), value.slice(dot + 1))) return undefined
    try {
      const parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as {n: string; m: string; e: number}
      if (typeof parsed.e !== 'number' || parsed.e < Date.now() || typeof parsed.n !== 'string') return undefined
      return {identity: {name: parsed.n, method: 'session'}, value, expires: parsed.e}
    } catch {
      return undefined
    }
  }

  /** Ends a session for good: its cookie value is refused from now on (sign out). */
  revoke(session: {value: string; expires: number}): void {
    const now = Date.now()
    for (const [value, expires] of this.revoked) if (expires < now) this.revoked.delete(value)
    this.revoked.set(session.value, session.expires)
  }

  /** The CSRF token for a credential binding (session cookie, user, or the anonymous loopback). */
  csrfToken(binding: string): string {
    return this.sign(`csrf:${binding}`)
  }

  checkCsrf(binding: string, token: string | undefined): boolean {
    return token !== undefined && token !== '' && safeEqual(this.csrfToken(binding), token)
  }
}

export function readCookie(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie
  if (!header) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

/** Loopback addresses (IPv4, IPv6, IPv4-mapped). */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false
  const a = address.replace(/^::ffff:/i, '')
  return a === '::1' || /^127\.\d+\.\d+\.\d+$/.test(a)
}

/** Host names a loopback-bound console answers to (anything else may be DNS rebinding). */
export function isLoopbackHost(host: string): boolean {
  const name = host
    .replace(/:\d+$/, '')
    .replace(/^\[(.*)\]$/, '$1')
    .toLowerCase()
  return name === 'localhost' || name.endsWith('.localhost') || isLoopbackAddress(name)
}
