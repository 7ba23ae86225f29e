import type {Server} from 'node:http'
import type {AddressInfo} from 'node:net'

import {expect} from 'chai'
import express from 'express'
import Fastify, {type FastifyReply, type FastifyRequest, type HookHandlerDoneFunction} from 'fastify'

import {createConsoleHandler, type ConsoleHandler} from '../../src/lib/console/handler.js'
import {ApiClient} from '../support/console.js'
import {TestSchema} from '../support/db.js'
import {fillDlq, whereIsEverything} from '../support/dlq.js'

const TOKEN = 'embed-token-0123456789abcdef'
const PREFIX = '/ops/queue'

// The two mounts below are the README's examples ("In an application"), line for line.

function expressApp(handler: ConsoleHandler): express.Express {
  const app = express()
  app.use(express.json(), express.urlencoded({extended: false})) // the app's own body parsers
  app.use('/ops/queue', handler)
  app.get('/health', (_req, res) => {
    res.send('ok')
  })
  return app
}

function fastifyApp(handler: ConsoleHandler): ReturnType<typeof Fastify> {
  const app = Fastify()
  // Before routing and body parsing: the console answers its prefix, the rest goes on to Fastify.
  app.addHook('onRequest', (request, reply, done) => handler(request.raw, reply.raw, done))
  app.get('/health', async () => 'ok')
  return app
}

/** The console's session cookie, after signing in with the token on the sign-in form. */
async function signIn(base: string): Promise<string> {
  const res = await fetch(`${base}/login`, {
    method: 'POST',
    headers: {'content-type': 'application/x-www-form-urlencoded'},
    body: new URLSearchParams({token: TOKEN, next: '/dlq'}).toString(),
    redirect: 'manual',
  })
  expect(res.status, 'sign in').to.equal(303)
  expect(res.headers.get('location')).to.equal(`${PREFIX}/dlq`)
  const cookie = res.headers.get('set-cookie') ?? ''
  expect(cookie).to.match(new RegExp(`Path=${PREFIX}`))
  return cookie.split(';')[0] as string
}

describe('console handler mounted in Express and Fastify under a prefix', function () {
  this.timeout(60_000)
  let t: TestSchema

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'uie'})
    await fillDlq(t, 6, {tasks: 2})
  })
  afterEach(async () => {
    await t.drop()
  })

  /** Pages, API, refusals, and a preview confirmed through the HTML form that moves entries. */
  async function exercise(origin: string): Promise<void> {
    const base = `${origin}${PREFIX}`
    // The application keeps what is not the console's.
    expect(await (await fetch(`${origin}/health`)).text()).to.equal('ok')
    // Refused without credentials: the API with 401, a page by sending the browser to sign in.
    const anonymous = await new ApiClient(base).get('/api/v1/status')
    expect(anonymous.status).to.equal(401)
    expect((anonymous.body as {error: {code: string}}).error.code).to.equal('E_UNAUTHORIZED')
    const page = await fetch(`${base}/`, {redirect: 'manual'})
    expect(page.status).to.equal(303)
    expect(page.headers.get('location')).to.equal(`${PREFIX}/login?next=%2F`)
    // A bearer token reads the API; the overview page renders with links under the prefix.
    const bearer = new ApiClient(base, {authorization: `Bearer ${TOKEN}`})
    const status = await bearer.get<{totals: {dlq: number}}>('/api/v1/status')
    expect(status.status).to.equal(200)
    expect(status.body.totals.dlq).to.equal(6)
    const overview = await bearer.get<string>('/')
    expect(overview.status).to.equal(200)
    expect(overview.body).to.match(/<title>Overview · backfill<\/title>/)
    expect(overview.body).to.include(`href="${PREFIX}/dlq"`)
    expect(overview.body).to.include(`href="${PREFIX}/assets/console.css"`)
    expect((await fetch(`${base}/assets/console.css`)).status).to.equal(200)

    // A browser session: sign in, then state changes need its CSRF token.
    const cookie = await signIn(base)
    const browser = new ApiClient(base, {cookie})
    const refused = await browser.post('/api/v1/dlq/retry', {task: 'task_1', dryRun: true}, {}, {csrf: false})
    expect(refused.status).to.equal(403)
    expect((refused.body as {error: {code: string}}).error.code).to.equal('E_CSRF')
    // The preview through the JSON API (X-CSRF-Token header) changes nothing...
    const preview = await browser.post<{stats: {total: number}; confirm: {token: string}}>('/api/v1/dlq/retry', {
      task: 'task_1',
      dryRun: true,
    })
    expect(preview.status).to.equal(200)
    expect(preview.body.stats.total).to.equal(3)
    expect((await whereIsEverything(t)).jobs).to.deep.equal([])
    // ...and its confirmation through the page's form (_csrf field, form-encoded) moves exactly those entries.
    const confirmed = await fetch(`${base}/dlq/retry`, {
      method: 'POST',
      headers: {'content-type': 'application/x-www-form-urlencoded', cookie},
      body: new URLSearchParams({
        _csrf: await browser.token(),
        confirm: preview.body.confirm.token,
        reason: 'embedded',
      }).toString(),
    })
    expect(confirmed.status).to.equal(200)
    expect(await confirmed.text()).to.match(/Retried 3 entries/)
    expect(await whereIsEverything(t)).to.deep.equal({dlq: [2, 4, 6], jobs: [1, 3, 5]})
    const [audit] = await t.query<{os_user: string; reason: string; count: number}>(
      `select os_user, reason, count from ${t.quoted}.backfill_dlq_audit where action = 'retry'`,
    )
    expect(audit).to.deep.equal({os_user: 'console:token', reason: 'embedded', count: 3})
  }

  it('Express: app.use(prefix, handler) behind express.json() and express.urlencoded()', async () => {
    const handler = createConsoleHandler({database: t.db, prefix: PREFIX, auth: {token: TOKEN}})
    const server: Server = await new Promise((resolve) => {
      const s = expressApp(handler).listen(0, '127.0.0.1', () => resolve(s))
    })
    try {
      await exercise(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('Express: app.use(handler) without a path, the prefix given to the handler only', async () => {
    const handler = createConsoleHandler({database: t.db, prefix: PREFIX, auth: {token: TOKEN}})
    const app = express()
    app.use(express.json(), express.urlencoded({extended: false}))
    app.use(handler)
    app.get('/health', (_req, res) => {
      res.send('ok')
    })
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s))
    })
    try {
      await exercise(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
      // Paths that merely start with the prefix's text are the application's.
      const near = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}${PREFIX}x/api/v1/status`)
      expect(near.status).to.equal(404)
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('Express: a body the application read as text is parsed by type; one read and dropped is an error, not an empty request', async () => {
    const handler = createConsoleHandler({database: t.db, prefix: PREFIX, auth: {token: TOKEN}})
    const app = express()
    app.use('/ops/queue', express.text({type: '*/*'}), (req, _res, next) => {
      if (req.headers['x-drop-body']) req.body = undefined
      next()
    })
    app.use('/ops/queue', handler)
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s))
    })
    try {
      const api = new ApiClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}${PREFIX}`, {
        authorization: `Bearer ${TOKEN}`,
      })
      const preview = await api.post<{stats: {total: number}}>('/api/v1/dlq/retry', {task: 'task_0', dryRun: true})
      expect(preview.status).to.equal(200)
      expect(preview.body.stats.total).to.equal(3)
      const dropped = await api.post('/api/v1/dlq/retry', {task: 'task_0', dryRun: true}, {'x-drop-body': '1'})
      expect(dropped.status).to.equal(500)
      expect((dropped.body as {error: {code: string}}).error.code).to.equal('E_BODY_CONSUMED')
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('Fastify: an onRequest hook hands the raw request to the handler before Fastify parses a body', async () => {
    const handler = createConsoleHandler({database: t.db, prefix: PREFIX, auth: {token: TOKEN}})
    const app = fastifyApp(handler)
    // The application's own onResponse hooks (and Fastify's request log) still see what the console answers.
    const seen: string[] = []
    app.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
      seen.push(`${request.raw.method} ${request.raw.url} ${reply.statusCode}`)
      done()
    })
    const origin = await app.listen({port: 0, host: '127.0.0.1'})
    try {
      await exercise(origin)
      expect(seen).to.include.members([
        'GET /health 200',
        `GET ${PREFIX}/api/v1/status 401`,
        `GET ${PREFIX}/api/v1/status 200`,
        `POST ${PREFIX}/dlq/retry 200`,
      ])
    } finally {
      await app.close()
    }
  })
})
