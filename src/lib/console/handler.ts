import type {IncomingMessage, ServerResponse} from 'node:http'

import {scrubSecrets} from '../connection.js'
import type {Database} from '../db.js'
import {errorEnvelope} from '../envelope.js'
import {jsonDocument} from '../json-document.js'
import type {LivenessOptions} from '../locks/owners.js'
import {
  checkToken,
  checkUser,
  hasCredentials,
  isLoopbackAddress,
  isLoopbackHost,
  SessionKeys,
  type AuthConfig,
  type Identity,
} from './auth.js'
import {SharedCache} from './cache.js'
import {ThroughputRing} from './throughput.js'
import {asBackfillError, HttpError, statusFor} from './errors.js'
import {ASSETS} from './assets.js'
import {escapeHtml} from './html.js'
import {openApiDocument} from './openapi.js'
import {createPages} from './pages.js'
import {Params} from './params.js'
import {ROUTES, type Plan, type Route, type RouteContext} from './routes.js'
import {PendingStore, type StoredResponse} from './store.js'

export interface ConsoleOptions {
  /** The schema's database handle (the caller owns it; see openConsoleDatabase for a statement timeout). */
  database: Database
  /** Where the console is mounted, e.g. "/admin/backfill" (default: the root). */
  prefix?: string
  /** No state-changing route exists. */
  readOnly?: boolean
  /** Accepted credentials (token, basic-auth users); see authFromEnv. */
  auth?: AuthConfig
  /**
   * The application's own authentication: an identity, or undefined to refuse (401). Runs
   * before the built-in credentials; requests it accepts are recorded under its identity.
   */
  authenticate?: (req: IncomingMessage) => Identity | undefined | Promise<Identity | undefined>
  /**
   * Host headers answered: 'loopback' (localhost and loopback addresses: what `backfill ui`
   * uses on a loopback bind, against DNS rebinding), a list, or undefined for any. Default:
   * 'loopback' without credentials or an authenticate hook (loopback clients are trusted then),
   * else any.
   */
  allowedHosts?: 'loopback' | readonly string[]
  /** How long read results are shared between requests (default 2000 ms). */
  cacheTtlMs?: number
  /** How long a preview can be confirmed (default 10 minutes). */
  confirmTtlMs?: number
  liveness?: LivenessOptions
  /**
   * Session cookies only over HTTPS. Default: when the sign-in came over TLS (this server's, or a
   * proxy's X-Forwarded-Proto: https; a forged header only makes the forger's own cookie Secure).
   */
  secureCookies?: boolean
  /** One line per request and per failure (never credentials, bodies or query strings). */
  log?: (line: string) => void
  /** Secrets to scrub from error messages (the database URL's password). */
  secrets?: readonly string[]
  /** The server-rendered pages (default: the console's own); false serves the API only. */
  pages?: PageRenderer | false
}

/** Renders the HTML pages; returns undefined for paths it does not serve. */
export interface PageRenderer {
  render(ctx: PageContext): Promise<PageResponse | undefined>
}

export interface PageContext extends RouteContext {
  /** Path below the prefix, e.g. "/dlq". */
  pathname: string
  prefix: string
  method: string
  /** Removes the console's secrets (the database password) from text shown, as error envelopes do. */
  scrub: (text: string) => string
  /** Calls an API route in process (the same code path as HTTP). */
  api: (method: 'GET' | 'POST', path: string, params?: Record<string, unknown>) => Promise<StoredResponse>
}

export interface PageResponse {
  status: number
  headers?: Record<string, string>
  body: string | Buffer
}

/**
 * A node:http request listener. Under a prefix it calls next() for other paths (before reading
 * anything), so Express's app.use and a Fastify onRequest hook can mount it too; see the README.
 */
export interface ConsoleHandler {
  (req: IncomingMessage, res: ServerResponse, next?: () => void): void
  readonly routes: readonly Route[]
  readonly cache: SharedCache
  readonly prefix: string
}

const MAX_BODY = 64 * 1024
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
}

interface CompiledRoute {
  route: Route
  pattern: RegExp
  names: string[]
}

function compile(route: Route): CompiledRoute {
  const names: string[] = []
  const source = route.path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{(\w+)\}/g, (_m, name: string) => {
    names.push(name)
    return '([^/]+)'
  })
  return {route, pattern: new RegExp(`^${source}$`), names}
}

/** Credentials of a request, and what its CSRF token is bound to (undefined: not ambient, no token needed). */
interface Authenticated {
  identity: Identity
  csrfBinding: string | undefined
}

export function createConsoleHandler(options: ConsoleOptions): ConsoleHandler {
  const prefix = (options.prefix ?? '').replace(/\/+$/, '')
  const readOnly = options.readOnly ?? false
  const auth = options.auth ?? {}
  const credentials = hasCredentials(auth)
  const keys = new SessionKeys()
  const cache = new SharedCache(options.cacheTtlMs ?? 2000)
  const throughput = new ThroughputRing()
  const pending = new PendingStore<Plan>(options.confirmTtlMs ?? 10 * 60_000)
  const routes = ROUTES.filter((r) => !readOnly || !r.write)
  const compiled = routes.map(compile)
  const hiddenWrites = ROUTES.filter((r) => r.write).map(compile)
  const log = options.log ?? (() => undefined)
  const secrets = options.secrets ?? options.database.target.secrets
  const cookiePath = prefix || '/'
  const pages = options.pages === false ? undefined : (options.pages ?? createPages())

  async function authenticate(req: IncomingMessage, remote: string): Promise<Authenticated | undefined> {
    if (options.authenticate) {
      const identity = await options.authenticate(req)
      return identity ? {identity: {...identity, method: 'custom'}, csrfBinding: `custom:${identity.name}`} : undefined
    }
    const header = req.headers.authorization
    if (header?.startsWith('Bearer ')) {
      const identity = checkToken(auth, header.slice(7).trim())
      // A bearer header is not sent by browsers on their own: no CSRF token needed.
      return identity ? {identity, csrfBinding: undefined} : undefined
    }
    if (header?.startsWith('Basic ')) {
      const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      const identity = colon < 0 ? undefined : checkUser(auth, decoded.slice(0, colon), decoded.slice(colon + 1))
      return identity ? {identity, csrfBinding: `basic:${identity.name}`} : undefined
    }
    const session = keys.readSession(req)
    if (session) return {identity: session.identity, csrfBinding: `session:${session.value}`}
    // No credentials configured: only this machine may use the console.
    if (!credentials && fromThisMachine(req, remote))
      return {identity: {name: 'local', method: 'anonymous'}, csrfBinding: 'anonymous'}
    return undefined
  }

  // Without credentials loopback clients are trusted: only loopback Host names may reach it, or a
  // page whose name was rebound to 127.0.0.1 would be same-origin to the browser (DNS rebinding).
  const allowedHosts = options.allowedHosts ?? (!credentials && !options.authenticate ? 'loopback' : undefined)

  function hostAllowed(req: IncomingMessage): boolean {
    const allowed = allowedHosts
    if (allowed === undefined) return true
    const host = req.headers.host ?? ''
    if (allowed === 'loopback') return isLoopbackHost(host)
    return allowed.includes(host.toLowerCase())
  }

  /** A browser's cross-site request: its Origin (or Sec-Fetch-Site) says so. */
  function crossSite(req: IncomingMessage): boolean {
    const site = req.headers['sec-fetch-site']
    if (site !== undefined && site !== 'same-origin' && site !== 'none') return true
    const origin = req.headers.origin ?? refererOrigin(req.headers.referer)
    if (origin === undefined) return false
    if (origin === 'null') return true
    try {
      return new URL(origin).host !== (req.headers.host ?? '')
    } catch {
      return true
    }
  }

  function send(res: ServerResponse, status: number, body: string | Buffer, headers: Record<string, string>): void {
    res.writeHead(status, {...SECURITY_HEADERS, 'cache-control': 'no-store', ...headers})
    res.end(body)
  }

  function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    // The CLI's --json writer: payloads exactly as stored (RawJson), lossless numbers verbatim.
    const text = jsonDocument(body, 0)
    send(res, status, text, {'content-type': 'application/json; charset=utf-8', ...headers})
  }

  function sendError(
    res: ServerResponse,
    raw: unknown,
    wantsHtml: boolean,
    headers: Record<string, string> = {},
  ): number {
    const error = asBackfillError(raw)
    const status = statusFor(error)
    const envelope = errorEnvelope(error, secrets)
    if (wantsHtml) {
      send(res, status, `<!doctype html><title>${status}</title><p>${escapeHtml(envelope.error.message)}</p>`, {
        'content-type': 'text/html; charset=utf-8',
        ...headers,
      })
    } else sendJson(res, status, envelope, headers)
    return status
  }

  async function readBody(req: IncomingMessage): Promise<Record<string, unknown> | URLSearchParams | undefined> {
    if (req.method !== 'POST') return undefined
    // Mounted behind the application's body parser (express.json(), express.urlencoded()): the
    // stream was read already and what it held is req.body.
    if (req.readableEnded) return parsedBody(req, (req as {body?: unknown}).body)
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of req) {
      size += (chunk as Buffer).length
      if (size > MAX_BODY) throw new HttpError(413, 'E_TOO_LARGE', `request body over ${MAX_BODY} bytes`)
      chunks.push(chunk as Buffer)
    }
    return parseBody(req, Buffer.concat(chunks).toString('utf8'))
  }

  function match(
    method: string,
    pathname: string,
  ): {route: Route; path: Record<string, string>} | 'method' | undefined {
    let wrongMethod = false
    for (const c of compiled) {
      const m = c.pattern.exec(pathname)
      if (!m) continue
      if (c.route.method !== method) {
        wrongMethod = true
        continue
      }
      const path: Record<string, string> = {}
      c.names.forEach((name, i) => {
        try {
          path[name] = decodeURIComponent(m[i + 1] ?? '')
        } catch {
          throw new HttpError(400, 'E_BAD_PATH', `malformed percent-encoding in ${name}`)
        }
      })
      return {route: c.route, path}
    }
    return wrongMethod ? 'method' : undefined
  }

  async function handle(req: IncomingMessage, res: ServerResponse, next?: () => void): Promise<void> {
    const started = performance.now()
    const method = req.method ?? 'GET'
    const remote = req.socket.remoteAddress ?? ''
    const url = requestUrl(originalUrl(req))
    let pathname = url?.pathname ?? ''
    if (url && (prefix === '' || (underPrefix(pathname, prefix) && underPrefix(rawPath(req), prefix))))
      pathname = pathname.slice(prefix.length) || '/'
    else {
      // Under the prefix only if the path as sent is too: "//host/ops/…" or "/x/../ops/…" is
      // not what an application or proxy guarding "/ops" sees as the console's.
      if (next) return next()
      sendError(
        res,
        url
          ? new HttpError(404, 'E_NOT_FOUND', 'not found')
          : new HttpError(400, 'E_BAD_PATH', 'malformed request target'),
        false,
      )
      return
    }
    const isApi = pathname.startsWith('/api/')
    const wantsHtml = !isApi
    let status = 0
    try {
      if (!hostAllowed(req))
        throw new HttpError(403, 'E_FORBIDDEN_HOST', `host "${req.headers.host ?? ''}" is not served here`, {
          suggestions: ['open the console at the URL `backfill ui` printed'],
        })
      if (method !== 'GET' && method !== 'HEAD' && method !== 'POST')
        throw new HttpError(405, 'E_METHOD', `method ${method} is not allowed`, {exitCode: 2})
      // Same-origin first: a cross-site POST is refused before anything is read or checked.
      if (method === 'POST' && crossSite(req))
        throw new HttpError(403, 'E_CROSS_SITE', 'cross-site request refused', {
          suggestions: ['state-changing requests must come from the console itself (same origin)'],
        })
      const asset = ASSETS[pathname]
      if (asset && method === 'GET') {
        // Public (the sign-in page uses them); no data in them.
        status = req.headers['if-none-match'] === asset.etag ? 304 : 200
        send(res, status, status === 304 ? '' : asset.body, {
          'content-type': asset.type,
          etag: asset.etag,
          'cache-control': 'no-cache',
        })
        return
      }
      if (pathname === '/login' || pathname === '/logout') {
        status = await loginRoute(req, res, method, pathname, url.searchParams.get('next') ?? undefined)
        return
      }
      if (isApi && pathname === '/api/v1/openapi.json' && method === 'GET') {
        // The document describes the API; it is public like a login page (no data in it).
        sendJson(res, 200, openApiDocument({prefix, readOnly}))
        status = 200
        return
      }
      if (!credentials && !options.authenticate && !fromThisMachine(req, remote))
        throw new HttpError(
          403,
          'E_FORBIDDEN',
          'no credentials are configured: the console only answers this machine',
          {
            suggestions: [
              'set BACKFILL_UI_TOKEN or BACKFILL_UI_USERS to serve other machines (a reverse proxy included)',
            ],
          },
        )
      const who = await authenticate(req, remote)
      if (!who) {
        if (!isApi && method === 'GET' && pages) {
          status = 303
          send(res, 303, '', {location: `${prefix}/login?next=${encodeURIComponent(pathname + url.search)}`})
          return
        }
        throw new HttpError(401, 'E_UNAUTHORIZED', 'authentication required', {
          suggestions: ['send Authorization: Bearer <BACKFILL_UI_TOKEN>, or sign in at /login'],
        })
      }
      const body = await readBody(req)
      const params = new Params([url.searchParams, body])
      const csrfToken = who.csrfBinding === undefined ? '' : keys.csrfToken(who.csrfBinding)
      if (method === 'POST' && who.csrfBinding !== undefined) {
        const token = (req.headers['x-csrf-token'] as string | undefined) ?? params.get('_csrf')
        if (!keys.checkCsrf(who.csrfBinding, token))
          throw new HttpError(403, 'E_CSRF', 'missing or invalid CSRF token', {
            suggestions: ['send the token of GET /api/v1/session as the X-CSRF-Token header (or the _csrf field)'],
          })
      }
      const ctx: RouteContext = {
        req,
        params,
        path: {},
        identity: who.identity,
        remoteAddress: remote,
        db: options.database,
        cache,
        pending,
        throughput,
        readOnly,
        liveness: options.liveness,
        idempotencyKey: (req.headers['idempotency-key'] as string | undefined)?.slice(0, 200),
        csrfToken,
      }
      if (isApi) {
        const found = match(method === 'HEAD' ? 'GET' : method, pathname)
        const hiddenWrite = readOnly && method === 'POST' && hiddenWrites.some((c) => c.pattern.test(pathname))
        if (hiddenWrite || !found)
          throw new HttpError(
            404,
            'E_NOT_FOUND',
            hiddenWrite ? `POST ${pathname}: the console is read-only` : `no API route ${pathname}`,
            {suggestions: hiddenWrite ? ['restart backfill ui without --read-only'] : ['see /api/v1/openapi.json']},
          )
        if (found === 'method') throw new HttpError(405, 'E_METHOD', `method ${method} is not allowed on ${pathname}`)
        ctx.path = found.path
        const answer = await found.route.handle(ctx)
        status = answer.status
        sendJson(res, answer.status, answer.body, answer.replay ? {'idempotent-replayed': 'true'} : {})
        return
      }
      if (pages) {
        const page = await pages.render({
          ...ctx,
          pathname,
          prefix,
          method,
          scrub: (text) => scrubSecrets(text, secrets),
          api: (m, p, extra) => callRoute(ctx, m, p, extra),
        })
        if (page) {
          status = page.status
          send(res, page.status, page.body, {'content-type': 'text/html; charset=utf-8', ...page.headers})
          return
        }
      }
      throw new HttpError(404, 'E_NOT_FOUND', `not found: ${pathname}`)
    } catch (error) {
      // The rest of an oversized body was never read: the connection cannot carry another request.
      const close = error instanceof HttpError && error.status === 413
      status = sendError(res, error, wantsHtml, close ? {connection: 'close'} : {})
      if (status >= 500)
        log(`error ${method} ${pathname}: ${errorEnvelope(asBackfillError(error), secrets).error.message}`)
    } finally {
      log(`${method} ${prefix}${pathname} ${status} ${Math.round(performance.now() - started)}ms ${remote}`)
    }
  }

  /** Calls an API route in process for the pages: same routes, same checks of input. */
  async function callRoute(
    base: RouteContext,
    method: 'GET' | 'POST',
    path: string,
    extra: Record<string, unknown> = {},
  ): Promise<StoredResponse> {
    const url = new URL(path, 'http://console.invalid')
    const found = match(method, url.pathname)
    if (!found || found === 'method') throw new HttpError(404, 'E_NOT_FOUND', `no API route ${url.pathname}`)
    return found.route.handle({...base, path: found.path, params: new Params([url.searchParams, extra])})
  }

  async function loginRoute(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    pathname: string,
    next: string | undefined,
  ): Promise<number> {
    const path = cookiePath
    if (pathname === '/logout') {
      if (method !== 'POST') throw new HttpError(405, 'E_METHOD', 'sign out with POST')
      const session = keys.readSession(req)
      if (session) keys.revoke(session)
      send(res, 303, '', {location: `${prefix}/login`, 'set-cookie': SessionKeys.clearCookie(path)})
      return 303
    }
    if (method === 'GET') {
      send(res, 200, loginPage(prefix, credentials, auth, undefined, next), {
        'content-type': 'text/html; charset=utf-8',
      })
      return 200
    }
    const body = await readBody(req)
    const params = new Params([body])
    const token = params.string('token')
    const user = params.string('user')
    const identity =
      token !== undefined
        ? checkToken(auth, token)
        : user !== undefined
          ? checkUser(auth, user, params.get('password') ?? '')
          : undefined
    if (!identity) {
      log(`login refused from ${req.socket.remoteAddress ?? ''}`)
      send(res, 401, loginPage(prefix, credentials, auth, 'Wrong credentials.', params.string('next')), {
        'content-type': 'text/html; charset=utf-8',
      })
      return 401
    }
    const target = localTarget(prefix, params.string('next'))
    send(res, 303, '', {
      location: target,
      'set-cookie': keys.sessionCookie(identity, options.secureCookies ?? overHttps(req), path),
    })
    return 303
  }

  const handler = ((req: IncomingMessage, res: ServerResponse, next?: () => void) => {
    handle(req, res, next).catch((error: unknown) => {
      if (!res.headersSent) sendError(res, error, false)
      else res.destroy()
    })
  }) as ConsoleHandler
  Object.defineProperties(handler, {
    routes: {value: routes},
    cache: {value: cache},
    prefix: {value: prefix},
  })
  return handler
}

function parseBody(req: IncomingMessage, text: string): Record<string, unknown> | URLSearchParams | undefined {
  if (text.trim() === '') return undefined
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
  if (type === 'application/json') {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      throw new HttpError(400, 'E_BAD_JSON', 'the request body is not valid JSON')
    }
    return jsonObject(parsed)
  }
  if (type === 'application/x-www-form-urlencoded') return new URLSearchParams(text)
  throw new HttpError(415, 'E_UNSUPPORTED_MEDIA_TYPE', `unsupported content type "${type ?? ''}"`, {
    suggestions: ['send application/json or application/x-www-form-urlencoded'],
  })
}

function jsonObject(parsed: unknown): Record<string, unknown> {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new HttpError(400, 'E_BAD_JSON', 'the request body must be a JSON object')
  return parsed as Record<string, unknown>
}

/** A body someone else read: an object from a JSON or form parser, or the text from a raw or text one. */
function parsedBody(req: IncomingMessage, body: unknown): Record<string, unknown> | URLSearchParams | undefined {
  if (typeof body === 'string') return parseBody(req, body)
  if (Buffer.isBuffer(body)) return parseBody(req, body.toString('utf8'))
  if (body !== undefined && body !== null) return jsonObject(body)
  throw new HttpError(500, 'E_BODY_CONSUMED', 'the request body was read before the console got it, and is gone', {
    suggestions: ['mount the console before middleware that reads request bodies, or have it leave req.body set'],
  })
}

/**
 * The Location to go to after signing in: a path under the prefix, percent-encoded, that a
 * browser resolves on this origin ("/\\evil.example", "/\t/evil.example" or "/./\\evil" resolve
 * to another host, so they are checked as a browser parses them), or the overview.
 */
function localTarget(prefix: string, next: string | undefined): string {
  const fallback = `${prefix}/`
  if (!next?.startsWith('/')) return fallback
  const base = new URL('http://console.invalid')
  let url: URL
  try {
    url = new URL(`${prefix}${next}`, base)
  } catch {
    return fallback
  }
  if (url.origin !== base.origin || url.pathname.startsWith('//') || !underPrefix(url.pathname, prefix)) return fallback
  return `${url.pathname}${url.search}${url.hash}`
}

function underPrefix(pathname: string, prefix: string): boolean {
  return prefix === '' || pathname === prefix || pathname.startsWith(`${prefix}/`)
}

/** A request-target as a URL: its path is a path even when it starts with "//"; undefined if malformed. */
function requestUrl(target: string): URL | undefined {
  try {
    return new URL(target.startsWith('/') ? `http://console.invalid${target}` : target)
  } catch {
    return undefined
  }
}

/** The path as sent, before dot segments are resolved. */
function rawPath(req: IncomingMessage): string {
  // As text: an absolute-form target ("http://h/x/../ops/…") loses its scheme and authority
  // only; parsing it as a URL would resolve the dot segments this check is about.
  const path = originalUrl(req).replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '')
  return path.split(/[?#]/, 1)[0] ?? ''
}

/**
 * A loopback client that is not a proxy relaying someone else: a reverse proxy on this machine
 * connects from 127.0.0.1 for every client it serves, and says so in these headers.
 */
function fromThisMachine(req: IncomingMessage, remote: string): boolean {
  const h = req.headers
  return isLoopbackAddress(remote) && !h.forwarded && !h['x-forwarded-for'] && !h['x-real-ip']
}

function overHttps(req: IncomingMessage): boolean {
  if ((req.socket as {encrypted?: boolean}).encrypted) return true
  const proto = req.headers['x-forwarded-proto']
  return (Array.isArray(proto) ? proto[0] : proto)?.split(',')[0]?.trim().toLowerCase() === 'https'
}

function originalUrl(req: IncomingMessage): string {
  // Express strips its mount path from req.url and keeps the full one in originalUrl.
  return (req as {originalUrl?: string}).originalUrl ?? req.url ?? '/'
}

function refererOrigin(referer: string | undefined): string | undefined {
  if (!referer) return undefined
  try {
    return new URL(referer).origin
  } catch {
    return 'null'
  }
}

function loginPage(prefix: string, credentials: boolean, auth: AuthConfig, message?: string, next?: string): string {
  const nextField = next ? `<input type="hidden" name="next" value="${escapeHtml(next)}">` : ''
  const tokenForm = auth.token
    ? `<form method="post" action="${escapeHtml(prefix)}/login">${nextField}<label>Token <input name="token" type="password" autocomplete="current-password" required></label> <button>Sign in</button></form>`
    : ''
  const userForm = auth.users?.size
    ? `<form method="post" action="${escapeHtml(prefix)}/login">${nextField}<label>User <input name="user" autocomplete="username" required></label> <label>Password <input name="password" type="password" autocomplete="current-password" required></label> <button>Sign in</button></form>`
    : ''
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Sign in · backfill</title><link rel="stylesheet" href="${escapeHtml(prefix)}/assets/console.css"></head><body><main class="login"><h1>backfill console</h1>${message ? `<p role="alert" class="error">${escapeHtml(message)}</p>` : ''}${credentials ? tokenForm + userForm : '<p>No credentials are configured: open the console from this machine.</p>'}</main></body></html>`
}
